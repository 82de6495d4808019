"""Seed a fresh oneproxy database for the benchmark: a user with a large
balance, one relay token, two `openai` channels (the instant nginx
upstream and the paced stream upstream) and one `anthropic` channel (nginx's
fixed Messages answer). Prints {"key": ...} as JSON.

Run after `manage.py bootstrap`, with the same environment:
    python bench/oneproxy_setup.py --instant http://127.0.0.1:18080/v1 --stream http://127.0.0.1:18081/v1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneproxy.settings")

import django

django.setup()

from billing import services  # noqa: E402
from billing.money import to_micro  # noqa: E402
from channels_app.services import create_channel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instant", required=True, help="base_url of the instant (nginx) upstream")
    parser.add_argument("--stream", required=True, help="base_url of the paced stream upstream")
    args = parser.parse_args()
    user, _ = services.create_user(username="bench")
    # Enough that no benchmark run can exhaust it: holds must always pass.
    services.topup(user, to_micro("1000000"))
    _, key = services.create_token(user=user, name="bench")
    # The bench models are unpriced, so the default price ("*") is charged:
    # billing runs for real on every request.
    create_channel(
        name="nginx", type="openai", base_url=args.instant, models=["bench-instant"], keys=["sk-upstream-bench-instant"]
    )
    # nginx's root: the adapter adds /v1/messages, as the Anthropic SDK's base_url.
    create_channel(
        name="nginx-anthropic",
        type="anthropic",
        base_url=args.instant.removesuffix("/v1"),
        models=["bench-claude"],
        keys=["sk-ant-upstream-bench"],
    )
    create_channel(
        name="paced",
        type="openai",
        base_url=args.stream,
        models=["bench-stream", "bench-slow"],
        keys=["sk-upstream-bench-stream"],
    )
    print(json.dumps({"key": key}))


if __name__ == "__main__":
    main()
