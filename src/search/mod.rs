//! Finding the right person from what people say: normalization of names and birth dates as
//! staff type them. (The matcher and its index build on these in the lookup issue.)

pub mod dates;
pub mod matcher;
pub mod normalize;
pub mod section;
