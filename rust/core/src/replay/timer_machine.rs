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
