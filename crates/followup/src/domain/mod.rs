//! Followup's domain (being written).
