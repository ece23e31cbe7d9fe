"""Templates (`${NAME}`, `$NAME`) and image references, independent of any Module."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ooto.domain.variables import (
    TemplateError,
    Variable,
    image_reference_problem,
    kernel_variables,
    parse_template,
    substitute,
    tag_safe,
)


class TestParse:
    def test_both_spellings_and_literal_text(self) -> None:
        assert parse_template("a${X}b$Y_1-c") == ("a", Variable("X"), "b", Variable("Y_1"), "-c")

    def test_double_dollar_is_a_literal_dollar(self) -> None:
        assert parse_template("a$$X") == ("a$X",)

    def test_a_dollar_that_cannot_start_a_name_is_kept(self) -> None:
        assert parse_template("cost: $5 $-x $") == ("cost: $5 $-x $",)

    @pytest.mark.parametrize("template", ["${X", "a${", "${X-1}", "${}", "${ X}"])
    def test_unterminated_or_invalid_braces_are_errors(self, template: str) -> None:
        with pytest.raises(TemplateError):
            parse_template(template)

    @given(st.text(alphabet="ab${}_-", max_size=30))
    def test_parse_never_fails_other_than_template_error(self, template: str) -> None:
        with contextlib.suppress(TemplateError):
            parse_template(template)

    @given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=50))
    def test_text_without_dollars_is_unchanged(self, text: str) -> None:
        assert substitute(text, {}) == text


class TestSubstitute:
    def test_unknown_variable_is_an_error_not_an_empty_string(self) -> None:
        with pytest.raises(TemplateError, match="unknown variable 'NOPE'"):
            substitute("a-${NOPE}", {"X": "1"})

    def test_transform_applies_to_values_not_to_literal_text(self) -> None:
        assert substitute("a+${X}", {"X": "b+c"}, tag_safe) == "a+b_c"


def test_tag_safe_replaces_characters_outside_the_tag_alphabet() -> None:
    assert tag_safe("6.1.0-rpi7-rpi-v8+") == "6.1.0-rpi7-rpi-v8_"
    assert tag_safe("a/b:c@d é") == "a_b_c_d__"


def test_kernels_without_xyz_get_no_xyz_variables() -> None:
    assert set(kernel_variables("weird", "m", "n")) == {
        "KERNEL_FULL_VERSION",
        "KERNEL_VERSION",
        "MOD_NAME",
        "MOD_NAMESPACE",
    }


@pytest.mark.parametrize(
    "image",
    [
        "quay.io/vendor/module-sample:fedora-5.16.11-200.fc35.x86_64",
        "localhost:5000/a/b:1",
        "busybox:latest",
        "a__b/c--d:tag",
        "r.io/m:t@sha256:" + "0" * 64,
    ],
)
def test_valid_references(image: str) -> None:
    assert image_reference_problem(image) is None


@pytest.mark.parametrize(
    "image",
    [
        "quay.io/m",
        "quay.io/M:1",
        "quay.io/m:",
        "quay.io/m:-x",
        "q.io/m:" + "a" * 129,
        "q.io/m: t",
        "",
    ],
)
def test_invalid_references(image: str) -> None:
    assert image_reference_problem(image) is not None
