//! The installer's library: verifying releases through TUF ([`tuf`]), its static install key
//! ([`keys`]) and air-gapped kits ([`kit`]). The `installer` binary is a thin layer over it.

pub mod keys;
pub mod kit;
pub mod tuf;
