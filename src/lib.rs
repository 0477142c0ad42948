//! kaigo-field: long-term care records (介護情報基盤) at evacuation shelters when the link to the
//! central base is cut. See ARCHITECTURE.md for the map of this crate.

pub mod access;
pub mod api;
pub mod audit;
pub mod authz;
pub mod central;
pub mod cli;
pub mod clock;
pub mod contract;
pub mod disclose;
pub mod gate;
pub mod http;
pub mod incident;
pub mod keys;
pub mod limits;
pub mod model;
pub mod node;
pub mod person_csv;
pub mod progress;
pub mod region;
pub mod search;
pub mod server;
pub mod snapshot;
pub mod staff;
pub mod store;
pub mod synth;
pub mod throttle;
pub mod tls;
pub mod views;
pub mod web;
