DROP TABLE security_events;
DROP TABLE login_failures;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE sms_sends;
DROP TABLE verifications;
DROP TABLE customers;
