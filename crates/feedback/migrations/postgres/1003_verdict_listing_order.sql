-- The verdict listing's order (received, then id) as an index, so a page is read from its
-- cursor on in order and stops at its size, however deep in the period it starts. It also
-- serves every range on received_at, which the index it replaces did.
CREATE INDEX lead_figures_listing ON lead_figures (received_at, lead_id);
DROP INDEX lead_figures_received;
