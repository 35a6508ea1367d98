-- The W3C trace context of the span that scheduled each timer (`key=value` lines, empty
-- when none was recorded): the fire runs in a child of it, so what a timer does shows in
-- the trace of what set it, e.g. a lead's SLA breach in the lead's own trace.
ALTER TABLE timers ADD COLUMN trace_context TEXT NOT NULL DEFAULT '';
