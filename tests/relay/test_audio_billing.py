"""Audio uploads are held and billed: whisper-1 by the second, an empty
balance refused (issue 13, defect 13)."""

from __future__ import annotations

import io

import openai
import pytest

from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def whisper(relay_setup):
    from billing.models import ModelPrice
    from channels_app.models import Channel

    ModelPrice.objects.update_or_create(model="whisper-1", channel_type="", defaults={"per_second": "0.0001"})
    channel = relay_setup["channel"]
    Channel.objects.filter(pk=channel.pk).update(models=[*channel.models, "whisper-1"])
    relay_setup["emulator"].models.append("whisper-1")
    return relay_setup


def test_whisper_is_billed_by_the_second(whisper, gateway):
    from billing.models import UsageLog

    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=whisper["key"], max_retries=0)
    text = sdk.audio.transcriptions.create(model="whisper-1", file=("a.mp3", io.BytesIO(b"\xff\xfb" * 3000)))
    assert text.text
    row = wait_for(lambda: UsageLog.objects.first())
    # the emulator reports {"type": "duration", "seconds": 1.0}: $0.0001
    assert row.cost == 100
    assert row.held >= 100


def test_an_audio_upload_the_balance_cannot_cover_is_refused(whisper, gateway):
    from billing import services
    from billing.models import User

    user = User.objects.get(pk=whisper["user"].pk)
    services.adjust(user, -user.balance, actor=user, note="empty")
    gateway.reload()
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=whisper["key"], max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        sdk.audio.transcriptions.create(model="whisper-1", file=("a.mp3", io.BytesIO(b"\xff\xfb" * 3000)))
    assert refused.value.status_code == 402
    assert whisper["emulator"].requests == []
