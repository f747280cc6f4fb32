"""The app's main journey through a client generated from shopd's OpenAPI document by openapi-python-client:
signup, verify (the code read from the log of a shopd texting to its log), login from another device (its texted
code) and from the signup's (its device token), list products, place an
order, read it. Every call goes through the generated client; a wrong status or shape fails the run.

    python3 journey.py BASE_URL SHOPD_LOG
"""
import re
import sys
import time
import uuid

from shopd_client import AuthenticatedClient, Client
from shopd_client.api.catalogue import list_products
from shopd_client.api.identity import login, start_signup, verify_login, verify_signup
from shopd_client.api.orders import get_order, place_order
from shopd_client.models import (
    AddressRequest,
    LoginRequest,
    OrderLineRequest,
    PlaceOrderRequest,
    SignupRequest,
    VerifyRequest,
)

base_url, log_path = sys.argv[1], sys.argv[2]
phone = f"+447400{uuid.uuid4().int % 1000000:06d}"
password = "correct horse battery staple"
anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)


def expect(response, status):
    if response.status_code != status:
        raise SystemExit(f"{response.status_code} instead of {status}: {response.content!r}")
    return response.parsed


def texted_code():
    """The last code shopd logged as texted (development SMS go to the log, the code after `#`)."""
    for _ in range(50):
        codes = re.findall(r"#(\d{6})", open(log_path, encoding="utf-8", errors="replace").read())
        if codes:
            return codes[-1]
        time.sleep(0.1)
    raise SystemExit("no code was texted")


started = expect(start_signup.sync_detailed(client=anonymous, body=SignupRequest(phone=phone, password=password)), 202)
verified = expect(
    verify_signup.sync_detailed(
        client=anonymous, body=VerifyRequest(verification_id=str(started.verification_id), code=texted_code())
    ),
    201,
)
assert verified.token_type == "Bearer" and verified.customer_id, verified
assert verified.device_token, verified
# Another device (no device token): the password gets a texted code, not tokens.
asked = expect(login.sync_detailed(client=anonymous, body=LoginRequest(phone=phone, password=password)), 202)
assert asked.second_factor_required, asked
second = expect(
    verify_login.sync_detailed(
        client=anonymous, body=VerifyRequest(verification_id=str(asked.verification_id), code=texted_code())
    ),
    200,
)
assert second.device_token and second.device_token != verified.device_token, second
# The signup's device: its token spares it the code.
pair = expect(
    login.sync_detailed(
        client=anonymous, body=LoginRequest(phone=phone, password=password, device_token=verified.device_token)
    ),
    200,
)
customer = AuthenticatedClient(base_url=base_url, token=pair.access_token, raise_on_unexpected_status=True)

products = expect(list_products.sync_detailed(client=anonymous), 200)
assert products.items, "the catalogue is empty"
product = products.items[0]

order = PlaceOrderRequest(
    items=[OrderLineRequest(product_id=product.id, quantity=2)],
    shipping_address=AddressRequest(
        name="Ada Lovelace", line1="12 St James's Square", city="London", postal_code="SW1Y 4JH", country="GB"
    ),
)
placed = expect(place_order.sync_detailed(client=customer, body=order, idempotency_key=str(uuid.uuid4())), 201)
assert placed.status == "pending_payment", placed
assert placed.total.amount == 2 * product.price.amount, (placed.total, product.price)

read = expect(get_order.sync_detailed(client=customer, id=placed.id), 200)
assert read.id == placed.id and read.items[0].quantity == 2 and read.items[0].product_id == product.id, read
print(f"journey done: customer {verified.customer_id}, order {read.id} ({read.status}, {read.total.amount})")
