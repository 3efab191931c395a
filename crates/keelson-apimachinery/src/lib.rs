//! Kubernetes API machinery without IO: errors as `Status`, field errors, label and field
//! selectors, name rules and the human durations of `kubectl get`.

pub mod duration;
pub mod errors;
pub mod fields;
pub mod labels;
pub mod names;
pub mod quantity;

pub use errors::{ApiError, FieldError, FieldErrorType, status_success};
pub use fields::{FieldOp, FieldRequirement, FieldSelector};
pub use labels::{Operator, Requirement, Selector, SelectorError};
