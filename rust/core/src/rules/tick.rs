//! Which due deadlines one tick applies. A tick runs inside one store transaction (a poll's),
//! so it takes a bounded batch: a hundred thousand timers due at once are applied over many
//! polls, each short, instead of one transaction that stalls every other writer.

/// The earliest `limit` of `due` (by time, then kind, then key: `T`'s order), in the order a
/// tick applies them. A store may hand in more candidates than it will apply (each kind's
/// earliest `limit`); what is left is due again at the next tick.
pub fn tick_batch<T: Ord>(mut due: Vec<(i64, T)>, limit: usize) -> Vec<(i64, T)> {
    due.sort_unstable();
    due.truncate(limit.max(1));
    due
}

#[cfg(test)]
mod tests {
    use super::tick_batch;

    #[test]
    fn takes_the_earliest_in_order_and_at_least_one() {
        let due = vec![(5, 'b'), (1, 'c'), (5, 'a'), (3, 'x')];
        assert_eq!(
            tick_batch(due.clone(), 3),
            vec![(1, 'c'), (3, 'x'), (5, 'a')]
        );
        assert_eq!(tick_batch(due, 0), vec![(1, 'c')]);
    }
}
