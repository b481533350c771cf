//! One module per subcommand.

pub(crate) mod inspect;
pub(crate) mod run;
