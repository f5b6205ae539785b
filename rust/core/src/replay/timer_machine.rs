//! The timer state machine of one `seq`.
//!
//! ```text
//! StartCommandCreated --TimerStarted recorded-----> Started
//! Started             --CancelTimer command-------> CancelCommandCreated
//! CancelCommandCreated --TimerCanceled recorded---> Canceled
//! Started             --TimerFired----------------> Fired
//! ```
//! Cancelling a fired or cancelled timer is a no-op.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerState {
    StartCommandCreated,
    Started { started_event_id: u64 },
    CancelCommandCreated { started_event_id: u64 },
    Canceled,
    Fired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerInput {
    StartRecorded { event_id: u64 },
    CancelCommand,
    CancelRecorded,
    Fired,
}

impl TimerState {
    pub fn on(self, input: TimerInput) -> Result<TimerState, String> {
        use TimerInput as I;
        use TimerState as S;
        match (self, input) {
            (S::StartCommandCreated, I::StartRecorded { event_id }) => Ok(S::Started {
                started_event_id: event_id,
            }),
            (S::Started { started_event_id }, I::CancelCommand) => {
                Ok(S::CancelCommandCreated { started_event_id })
            }
            (S::Fired | S::Canceled, I::CancelCommand) => Ok(self),
            (S::CancelCommandCreated { .. }, I::CancelRecorded) => Ok(S::Canceled),
            (S::Started { .. }, I::Fired) => Ok(S::Fired),
            (state, input) => Err(format!("timer in state {state:?} cannot take {input:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TimerInput as I, TimerState as S};

    #[test]
    fn start_fire_and_cancel() {
        let started = S::StartCommandCreated
            .on(I::StartRecorded { event_id: 3 })
            .unwrap();
        assert_eq!(started.on(I::Fired).unwrap(), S::Fired);
        let cancelling = started.on(I::CancelCommand).unwrap();
        assert_eq!(cancelling.on(I::CancelRecorded).unwrap(), S::Canceled);
        assert_eq!(S::Fired.on(I::CancelCommand).unwrap(), S::Fired);
    }

    #[test]
    fn impossible_pairs_are_errors() {
        assert!(S::StartCommandCreated.on(I::Fired).is_err());
        assert!(S::Fired.on(I::Fired).is_err());
        assert!(S::Canceled.on(I::CancelRecorded).is_err());
    }
}
