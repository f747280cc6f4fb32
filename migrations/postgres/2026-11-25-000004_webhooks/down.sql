DROP TABLE webhook_events;
DROP TABLE webhook_receipts;
