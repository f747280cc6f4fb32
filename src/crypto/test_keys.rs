//! Keys made for the tests only.

/// A 2048-bit RSA key made for these tests only (`openssl genpkey -algorithm RSA`, then `openssl pkcs8 -topk8 -nocrypt`: PKCS#8 DER).
pub const TEST_RSA_PKCS8: &str = concat!(
    "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCK2gAginUwGUFH8fUOnYBOtUZwd2IcWsqiPVye1GvapI0B5eNZ",
    "u0gkDNQVJRMlNU1PBwUY6+wE/dugl7/Z8RbPdyQMuSJSIu1jQzg5BkrqOTR1Joivt4zgq4ii7Tg7MdvJqMJSiJeVqQVvEMaPGj5F",
    "pLKiVzQjj1e2qyJSAuvvvK8FGbVFx/XSunhbVc0qJRjxm1LCslrhGojlVww9YXWeteKNcndjNqbaVTcFe1AIjQp6dmLcYL3qDKjz",
    "gBe3C8EdMJBex1PVoWzTPu5BmmyzDnJ8T6trAY3ysu7fiBz5aneGaz2VgxnzJf8XFb53REx4KhU/r81mWRW5gwkh9VUDAgMBAAEC",
    "ggEAAIG7uCebrJP/U5MWYbAooE0411LHmzxZIiKvbalvWfQNQWPdNl4NCp9pNaufs3Ty7CsvgXYz5NInmcikAKc1B8Jt58Dn10b6",
    "0YO8GXNVxm45ZzZdD5RZpowdaqqBXRKPZa6ZV+NjCysjBl0ElIE0NTXc8YEfltyPG73pxZOziZdDDx+v5xh8OzoEJLjU7ObAHEnk",
    "aefsuPIoGD18okMy5UC/QpK7SpZB5sdtSv+6PklbXLJ5d0QxSSbrhcmabrhXlj7k1GVQUTlM4dgpIQZBkEqL7DWKKqMUMslsNzSZ",
    "Jn4kvikwDdUpep5fm4XWMNmu3osMEjpgxfwgOe+ViUMPDQKBgQC/+8QLBj49xO6u/yNb+E4ES2dnRQC3z+j6okIxNBii1Nb4nzCe",
    "FwGKYZcHIUvTHwZU4CfCPKhDBrG+wCNdB/UZ26/mD5Dyv+jD1FPJLRYz0RRg/XV920ocho95Whk1pipQFQObLlFsWZn9OTFykzlV",
    "EhDfwO4yFpYv4Wh6BACOzwKBgQC5JsAg3m2VSlShwJT0dvjyMbSMFSUrv0hmR1EB/7UpvN/4XagKMGkdLHGLb/+PgNyqbjsGAB9L",
    "I64q74MwJlXXUu+FpsegG7ARHBlmlH7RWGlk8yPfE/YbPq/omkFysSkt6MXgSs533kjKh5bNezWKxXuiNA51bDCpmJWg8PHDjQKB",
    "gFhV9OeJsNvlIFofBVsNDoDFXUfUJTduj+m6/S/8o5VQz7VIMiubtFbC/qYGOQhkjxpApaqnFFj63JBDgkINJkcGoZH++Zfom6Z3",
    "rTG08DFZc8II/aWyYBBuDdgtj8nysid089rUXhy3wbYVOd5ZRZkSHfeGo1Mit2pCkjsKWmNbAoGAQ0W1ITwwDMJJJcxXUsu3gChX",
    "NV6pds+1epQG9vb12AhsSE2fNLSKPLNdPhCfhoCHrNUIVRHOTPrV2XvU6rXDEs1rgeArQB1PR6gyAneJ7H53LNq6+d7C2PtZ5uXF",
    "Sercz3V4EBqeEieNwyiovlg6CAXg+fp4FmoM9FIga62f6jECgYAsMOl9+Lwxe/Rgytaw52zrV0PTcPKPgLHdsD4jMaGBXD/Yjig7",
    "Amje00y4w82AhAEm1d0F6x1AbHH+A/vL5Qg/CjAlXxOkYTPGADhoFdQoLFKSmuFO/KCLQ+9sST+VSHo1gHFYNZtdJbcj5rTEsNrQ",
    "AsSwy1BNDxFubjs09BNBAA==",
);
