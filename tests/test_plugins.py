"""``rtp_scale.plugins.load_object``: resolving ``module:attr`` specs and one-line errors when they are wrong."""
from __future__ import annotations

import collections
import os.path

import pytest

from rtp_scale.errors import UserError
from rtp_scale.plugins import is_spec, load_object


def test_resolves_module_attribute():
    assert load_object("collections:OrderedDict", kind="method") is collections.OrderedDict


def test_resolves_dotted_attribute():
    assert load_object("os:path.join", kind="dataset") is os.path.join


def test_is_spec():
    assert is_spec("my_lab.methods:Method") and not is_spec("rtp")


@pytest.mark.parametrize("spec, words", [
    ("no_such_module_xyz:Thing", ["method", "no_such_module_xyz:Thing", "cannot import"]),
    ("collections:NoSuchThing", ["method", "collections:NoSuchThing", "no attribute"]),
    ("collections:OrderedDict.nope", ["method", "no attribute 'OrderedDict.nope'"]),
    ("collections:", ["method", "package.module:attr"]),
    (":OrderedDict", ["method", "package.module:attr"]),
])
def test_errors_are_one_line_and_say_what(spec, words):
    with pytest.raises(UserError) as err:
        load_object(spec, kind="method")
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_import_error_inside_plugin_module_is_reported(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="dataset 'broken_plugin_mod:load'.*no_such_dependency_xyz"):
        load_object("broken_plugin_mod:load", kind="dataset")
