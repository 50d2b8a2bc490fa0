//! Sans-IO MTA-STS (RFC 8461).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod domain;
pub mod io;
mod mx;
mod policy;
mod txt;

pub use domain::NameProblem;
pub use mx::{MxPattern, MxPatternError};
pub use policy::{
    Extension, Field, Layout, MAX_AGE_LIMIT, Mode, Policy, PolicyBuildError, PolicyBuilder,
    PolicyError, PolicyErrorKind, PolicyReport, PolicyWarning, PolicyWarningKind, Profile,
};
pub use txt::{MAX_ID_LEN, StsRecord, TxtError, TxtErrorKind, TxtLayout, TxtWarning, TxtWarningKind};
