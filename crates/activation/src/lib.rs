//! fairchance activation: every accepted lead gets an owner, a relevant first action and a
//! visible SLA timer; a lead not activated in time is the system's failure, escalated and
//! reassigned. Read top-down: [`domain`] (the rules, pure), [`playbook`] (the operator's
//! rules file).

pub mod domain;
pub mod playbook;
