"""Where `make run` points people: pages at an address they reach, links at those pages."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from errands.demo import page_settings, reachable_url


def test_a_service_bound_to_an_address_is_reached_there() -> None:
    assert reachable_url("127.0.0.1", 8081) == "http://127.0.0.1:8081"
    assert reachable_url("192.168.1.20", 8080) == "http://192.168.1.20:8080"
    assert reachable_url("::1", 8081) == "http://[::1]:8081"


def test_a_service_bound_to_every_interface_is_reached_at_an_address_of_this_machine() -> None:
    host = urlsplit(reachable_url("0.0.0.0", 8081)).hostname  # noqa: S104
    assert host is not None and host != "0.0.0.0"  # noqa: S104
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))  # only an address of this machine can be bound


def test_links_open_the_app_and_the_console_page_unless_the_environment_says() -> None:
    urls = {"intake_url": "http://10.0.0.5:8080", "dispatcher_url": "http://10.0.0.5:8081"}
    assert page_settings(**urls, environ={}) == {
        "ENROLMENT_URL": "http://10.0.0.5:8081/app",
        "PASSWORD_SETUP_URL": "http://10.0.0.5:8080/password-setup",
    }
    mine = {"ENROLMENT_URL": "https://errands.example/app", "PASSWORD_SETUP_URL": ""}
    assert page_settings(**urls, environ=mine) == {
        "ENROLMENT_URL": "https://errands.example/app",
        "PASSWORD_SETUP_URL": "http://10.0.0.5:8080/password-setup",
    }
