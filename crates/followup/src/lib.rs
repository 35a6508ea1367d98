//! fairchance followup: every activated lead is enrolled in a cadence of scheduled steps that
//! become tasks for its owner; engagement stops, pauses or redirects the cadence, silence
//! changes the angle, lost momentum escalates, and a cadence that ends unanswered recycles the
//! lead into long-term nurture instead of closing it. Read top-down: [`domain`] (the rules,
//! pure), [`playbook`] (the operator's rules file).

pub mod domain;
pub mod playbook;
