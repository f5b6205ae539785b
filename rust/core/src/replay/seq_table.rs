//! Machines indexed by their sequence number. Workflow code numbers activities and timers
//! 1, 2, 3, ... so a vector indexed by `seq - 1` beats a map on the replay hot path.

#[derive(Debug)]
pub struct SeqTable<T: Copy> {
    slots: Vec<Option<T>>,
}

impl<T: Copy> Default for SeqTable<T> {
    fn default() -> Self {
        SeqTable { slots: Vec::new() }
    }
}

impl<T: Copy> SeqTable<T> {
    pub fn get(&self, seq: u32) -> Option<T> {
        let index = (seq as usize).checked_sub(1)?;
        self.slots.get(index).copied().flatten()
    }

    pub fn contains(&self, seq: u32) -> bool {
        self.get(seq).is_some()
    }

    /// Stores the machine of `seq` (0 is never a valid seq and is ignored).
    pub fn set(&mut self, seq: u32, value: T) {
        let Some(index) = (seq as usize).checked_sub(1) else {
            return;
        };
        if index >= self.slots.len() {
            self.slots.resize(index + 1, None);
        }
        self.slots[index] = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::SeqTable;

    #[test]
    fn sparse_sequence_numbers() {
        let mut table = SeqTable::default();
        assert_eq!(table.get(3), None);
        table.set(3, 'c');
        table.set(1, 'a');
        table.set(0, 'z');
        assert_eq!(
            (table.get(1), table.get(2), table.get(3)),
            (Some('a'), None, Some('c'))
        );
        assert!(!table.contains(0));
    }
}
