DROP TABLE sign_in_nonces;
DROP TABLE identities;
