//! The canary-versus-baseline statistical judge (being written).
