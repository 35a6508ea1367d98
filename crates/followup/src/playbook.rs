//! The `[followup]` playbook section (being written).
