//! Domain types of Japanese care paperwork: identifiers with their check digits, codes, dates in
//! the era calendar, and the person record. No IO here: everything is a value.

pub mod ids;
pub mod kana;
pub mod person;
pub mod text;
pub mod wareki;

pub use ids::{IdError, InsuredNumber, InsurerNumber, MunicipalityCode, OfficeNumber, PersonId};
pub use person::{CareLevel, PersonRecord, Sex};
