DROP TABLE staff_invitations;
DROP INDEX webhook_events_order;
DROP INDEX orders_status_id;
DROP INDEX audit_log_staff;
ALTER TABLE orders DROP COLUMN tracking_number;
ALTER TABLE orders DROP COLUMN carrier;
DROP TABLE console_sessions;
DROP TABLE staff_recovery_codes;
DROP TABLE staff_factors;
