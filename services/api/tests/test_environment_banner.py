"""Outside production the chart sets API_ENVIRONMENT_BANNER (preprod): every page api
serves then names the environment at its top, so that a tester never takes it for
production. Production pages carry no such notice."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from carevault_api.oauth.pages import error_page, sign_in_page
from carevault_api.oauth.router import _banner
from carevault_common.settings import Environment

NOTICE = "PREPROD: a test installation, not for real patient data."


def _request(environment: Environment, banner: bool) -> Any:
    settings = SimpleNamespace(environment=environment, environment_banner=banner)
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(settings=settings)))


def _authorization() -> Any:
    return SimpleNamespace(client=SimpleNamespace(name="Clinic app"), scopes=["patient/*.rs"])


def test_pages_name_the_environment_when_the_banner_is_on() -> None:
    banner = _banner(_request(Environment.PREPROD, True))
    assert banner == "preprod"
    assert NOTICE in sign_in_page(_authorization(), {}, banner=banner)
    assert NOTICE in sign_in_page(_authorization(), {}, "Wrong password", banner=banner)
    assert NOTICE in error_page("Unknown client", banner=banner)


def test_no_notice_without_the_banner() -> None:
    for request in (_request(Environment.PROD, False), _request(Environment.PREPROD, False)):
        banner = _banner(request)
        assert banner == ""
        assert "test installation" not in sign_in_page(_authorization(), {}, banner=banner)
        assert "test installation" not in error_page("Unknown client", banner=banner)
