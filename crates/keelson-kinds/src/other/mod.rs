//! Kinds of the smaller groups: discovery, coordination, storage, scheduling, autoscaling, events.

pub mod endpoint_slice;
pub mod events_event;
pub mod hpa_v1;
pub mod hpa_v2;
pub mod lease;
pub mod priority_class;
pub mod storage_class;
