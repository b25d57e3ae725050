//! See tests/attacks.rs.
