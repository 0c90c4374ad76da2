//! How the runtime's refusals answer over HTTP: each error of admission and of schedules
//! as its one `ApiError` (the runtime itself knows no HTTP).

use crate::error::ApiError;
use crate::jobs::accept::{AcceptError, QUEUE_FULL_RETRY};
use crate::jobs::schedule::ScheduleError;

impl From<AcceptError> for ApiError {
    fn from(e: AcceptError) -> Self {
        match e {
            AcceptError::UnknownKind(_) | AcceptError::NotSchedulable(_) => {
                ApiError::invalid("kind", e.to_string())
            }
            AcceptError::Invalid(fields) => ApiError::Invalid(fields),
            AcceptError::KeyReused => ApiError::invalid("Idempotency-Key", e.to_string()),
            AcceptError::TickTaken | AcceptError::Duplicate => ApiError::Conflict(e.to_string()),
            AcceptError::TooManyActive { .. } => ApiError::TooMany {
                message: e.to_string(),
                retry_after: std::time::Duration::from_secs(5),
            },
            AcceptError::QueueFull { .. } => ApiError::Busy {
                message: e.to_string(),
                retry_after: QUEUE_FULL_RETRY,
            },
            AcceptError::DiskFull { .. } => ApiError::InsufficientStorage(e.to_string()),
            AcceptError::Database(e) => e.into(),
            AcceptError::Pool(e) => e.into(),
            AcceptError::Blocking(e) => e.into(),
        }
    }
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::Invalid(fields) => ApiError::Invalid(fields),
            ScheduleError::NameTaken(_) | ScheduleError::TooMany(_) => {
                ApiError::Conflict(e.to_string())
            }
            ScheduleError::NotFound => ApiError::NotFound("schedule"),
            ScheduleError::Database(e) => e.into(),
        }
    }
}
