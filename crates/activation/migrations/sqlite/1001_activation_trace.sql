-- The lead's own trace: the W3C trace context (`key=value` lines) of the span its
-- LeadAccepted was consumed in, written once when the activation is created. Changes made
-- later on a caller's behalf (a first action, a reassignment) continue this trace, linked to
-- the caller's, so one trace follows the lead from intake to follow-up.
ALTER TABLE activations ADD COLUMN trace_context TEXT NOT NULL DEFAULT '';
