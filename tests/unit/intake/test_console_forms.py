"""The console's form helpers: the API's field errors worded per field, and where a login may lead."""

from __future__ import annotations

from services.intake.entrypoints.console.auth import _safe_next
from services.intake.entrypoints.console.common import field_errors, form_field_name


def test_api_field_paths_become_the_forms_field_names() -> None:
    assert form_field_name("$.pickup.lat") == "pickup_lat"
    assert form_field_name("$.dropoffs[1].address") == "dropoffs_1_address"
    assert form_field_name("$.items[0].quantity") == "items_0_quantity"
    assert form_field_name("override.reason", {"override.reason": "override_reason"}) == "override_reason"
    assert form_field_name("$.override", {"override": "override_reason"}) == "override_reason"


def test_known_errors_are_worded_in_the_staffs_language_and_others_keep_the_apis_message() -> None:
    problem = {
        "detail": "Invalid fields",
        "errors": [
            {"field": "$.pickup.lat", "message": "Input should be a valid number", "type": "float_parsing"},
            {
                "field": "$.dropoffs[0]",
                "message": "Value error, give lat and lon, or recipient_id or place_id or address",
                "type": "value_error",
            },
            {"field": "$.deliver_by", "message": "Value error, a rule nobody worded", "type": "value_error"},
            {"field": "$.kind", "message": "Input should be 'errand'", "type": "literal_error"},
            {"field": "$.items[0].name", "message": "a message nobody translated"},
        ],
    }
    zh = field_errors(problem, "zh")
    assert zh.get("pickup_lat") == ["请输入数字。"]
    assert zh.get("kind") == ["请从列表中选择。"]
    assert zh.get("dropoffs_0") == ["请指定地点：登记的记录、地址或坐标。"]
    assert zh.get("deliver_by") == ["a rule nobody worded"]
    assert zh.get("items_0_name") == ["a message nobody translated"]
    assert field_errors(problem, "en").get("pickup_lat") == ["Enter a number."]
    assert not zh.general


def test_errors_about_fields_the_form_lacks_and_bare_problems_are_said_for_the_whole_form() -> None:
    problem = {"errors": [{"field": "$.somewhere_else", "message": "not here", "type": "missing"}]}
    errors = field_errors(problem, "en", known_fields=("volunteer_id",))
    assert errors.by_field == {}
    assert errors.general == ["somewhere_else: Required."]
    bare = field_errors({"title": "Conflict", "detail": "The volunteer is off duty."}, "en")
    assert bare.general == ["The volunteer is off duty."]


def test_after_login_only_a_console_page_of_this_site_is_a_destination() -> None:
    assert _safe_next("/console/tasks/abc?x=1") == "/console/tasks/abc?x=1"
    for elsewhere in ("https://evil.example/console", "//evil.example/console", "/v1/tasks", "", None):
        assert _safe_next(elsewhere) == "/console/tasks"
    assert _safe_next("/console/logout") == "/console/tasks"


def test_the_dispatchers_refusal_of_a_volunteer_is_said_by_the_volunteer_field() -> None:
    problem = {"status": 409, "title": "Insurance lapsed", "detail": "Insurance ended 2026-01-01."}
    errors = field_errors(problem, "zh", refusal_field="volunteer_id")
    assert errors.get("volunteer_id") == ["该志愿者的保险不在有效期内；如确需指派，请填写越过限制的理由。"]
    assert not errors.general
