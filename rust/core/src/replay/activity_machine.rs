//! The activity state machine of one `seq`.
//!
//! ```text
//! ScheduleCommandCreated --ActivityScheduled recorded-----------> Scheduled
//! Scheduled              --RequestCancelActivity command--------> CancelCommandCreated
//! CancelCommandCreated   --ActivityCancelRequested recorded-----> CancelRecorded
//! Scheduled | CancelCommandCreated | CancelRecorded --result----> Resolved
//! ```
//! A cancel request for a resolved activity is a no-op: the result raced the request.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivityState {
    ScheduleCommandCreated,
    Scheduled { scheduled_event_id: u64 },
    CancelCommandCreated { scheduled_event_id: u64 },
    CancelRecorded { scheduled_event_id: u64 },
    Resolved,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivityInput {
    ScheduleRecorded { event_id: u64 },
    CancelCommand,
    CancelRecorded,
    Resolution,
}

impl ActivityState {
    pub fn scheduled_event_id(self) -> Option<u64> {
        match self {
            ActivityState::Scheduled { scheduled_event_id }
            | ActivityState::CancelCommandCreated { scheduled_event_id }
            | ActivityState::CancelRecorded { scheduled_event_id } => Some(scheduled_event_id),
            _ => None,
        }
    }

    /// The one transition table; `Err` names the impossible pair.
    pub fn on(self, input: ActivityInput) -> Result<ActivityState, String> {
        use ActivityInput as I;
        use ActivityState as S;
        match (self, input) {
            (S::ScheduleCommandCreated, I::ScheduleRecorded { event_id }) => Ok(S::Scheduled {
                scheduled_event_id: event_id,
            }),
            (S::Scheduled { scheduled_event_id }, I::CancelCommand) => {
                Ok(S::CancelCommandCreated { scheduled_event_id })
            }
            (S::Resolved, I::CancelCommand) => Ok(S::Resolved),
            (S::CancelCommandCreated { scheduled_event_id }, I::CancelRecorded) => {
                Ok(S::CancelRecorded { scheduled_event_id })
            }
            (
                S::Scheduled { .. } | S::CancelCommandCreated { .. } | S::CancelRecorded { .. },
                I::Resolution,
            ) => Ok(S::Resolved),
            (state, input) => Err(format!("activity in state {state:?} cannot take {input:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ActivityInput as I, ActivityState as S};

    #[test]
    fn the_happy_path_and_a_cancel_race() {
        let scheduled = S::ScheduleCommandCreated
            .on(I::ScheduleRecorded { event_id: 5 })
            .unwrap();
        assert_eq!(scheduled.scheduled_event_id(), Some(5));
        let cancelling = scheduled.on(I::CancelCommand).unwrap();
        let recorded = cancelling.on(I::CancelRecorded).unwrap();
        assert_eq!(recorded.on(I::Resolution).unwrap(), S::Resolved);
        assert_eq!(S::Resolved.on(I::CancelCommand).unwrap(), S::Resolved);
    }

    #[test]
    fn impossible_pairs_are_errors() {
        assert!(S::ScheduleCommandCreated.on(I::Resolution).is_err());
        assert!(S::ScheduleCommandCreated.on(I::CancelCommand).is_err());
        assert!(S::Resolved.on(I::Resolution).is_err());
        let scheduled = S::Scheduled {
            scheduled_event_id: 1,
        };
        assert!(scheduled.on(I::ScheduleRecorded { event_id: 2 }).is_err());
        assert!(scheduled.on(I::CancelRecorded).is_err());
    }
}
