ALTER TABLE sessions DROP COLUMN amr;
DROP TABLE known_devices;
