//! fairchance activation: every accepted lead gets an owner, a relevant first action and a
//! visible SLA timer; a lead not activated in time is the system's failure, escalated and
//! reassigned. Read top-down: [`domain`] (the rules, pure), [`playbook`] (the operator's
//! rules file), [`record`] and [`store`] (persistence), [`service`] (use cases in
//! transactions), [`intake_events`] and [`convert`] (the wire).

pub mod convert;
pub mod domain;
pub mod intake_events;
pub mod playbook;
pub mod record;
pub mod service;
pub mod store;
