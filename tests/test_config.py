"""One typed loader for every daemon's config: defaults only from the packaged TOML, every
value checked (type, range, against the others), each error one line naming file, key
and line; never a traceback, whatever the file holds."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemonkit import config as loader
from daemonkit.config import Config, Section
from dock import config as dock_config
from dock.__main__ import main as dock_main
from evidence.exc import ConfigError
from firmware import config as recorder_config
from supervisor import config as supervisor_config

SCHEMAS = [
    (recorder_config.RecorderConfig, recorder_config.PACKAGE_DEFAULTS),
    (dock_config.DockConfig, dock_config.PACKAGE_DEFAULTS),
    (supervisor_config.SupervisorConfig, supervisor_config.PACKAGE_DEFAULTS),
]


def sections(cls: type[Section]):
    """Every dataclass reachable from ``cls`` (itself included)."""
    yield cls
    for tp in typing.get_type_hints(cls).values():
        if isinstance(tp, type) and issubclass(tp, Section):
            yield from sections(tp)


@pytest.mark.parametrize("schema,packaged", SCHEMAS, ids=lambda x: getattr(x, "__name__", ""))
def test_defaults_come_only_from_the_packaged_toml(schema, packaged):
    for cls in sections(schema):
        for f in dataclasses.fields(cls):
            assert f.default is dataclasses.MISSING, f"{cls.__name__}.{f.name} has a default"
            assert f.default_factory is dataclasses.MISSING
    config = loader.load(schema, packaged)
    assert config.as_dict() == tomllib.loads(Path(packaged).read_text())


def test_the_defaults_that_disagreed_now_agree():
    from firmware.writer import SegmentWriter

    rec = recorder_config.load(None)
    assert rec.recording.queue_frames == 250
    writer_default = SegmentWriter.__init__.__kwdefaults__["queue_frames"]
    assert writer_default == rec.recording.queue_frames
    assert dock_config.load().mqtt.port == 8883 == rec.mqtt.port


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,says",
    [
        ("[dock]\nbays = [1]\n", ":2: dock.bays must be a list of strings, not [1]"),
        ("[dock]\n# a comment\ntimeout_s = -1\n", ":3: dock.timeout_s must be more than 0, not -1"),
        ("[deadlines]\ncheck_s = 0\n", ":2: deadlines.check_s must be at least 1, not 0"),
        (
            "[deadlines]\nwarn_h = 30\n",
            ":2: deadlines.warn_h (30) must not be more than deadlines.limit_h (24): "
            "the warning comes before the violation",
        ),
        ("[mqtt]\nport = 0\n", ":2: mqtt.port must be between 1 and 65535, not 0"),
        ("[mqtt]\nport = '8883'\n", ":2: mqtt.port must be an integer, not '8883'"),
        (
            "\n[dock]\nbayz = []\n",
            ":3: unknown setting 'dock.bayz' (not a setting in [dock]; did you mean 'dock.bays'?)",
        ),
        ("colour = 'red'\n", ":1: unknown setting 'colour' (not a setting in the top level)"),
        ("dock = 3\n", ":1: [dock] must be a table, not 3"),
        ("[dock\n", ": not valid TOML: "),
    ],
)
def test_a_bad_dock_config_is_one_line_naming_file_key_and_line(tmp_path, capsys, text, says):
    path = write(tmp_path, text)
    (tmp_path / "store").mkdir()
    code = dock_main(["--config", str(path), "--store", str(tmp_path / "store"), "status"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"bodycam-dock: error: {path}{says}"), err


@pytest.mark.parametrize(
    "text,says",
    [
        ("[health]\npoll_s = 0\n", ":2: health.poll_s must be at least 0.05, not 0"),
        ("[recording]\nqueue_frames = 0\n", ":2: recording.queue_frames must be at least 1"),
        ("[controls]\nreminder_s = -5.0\n", ":2: controls.reminder_s must be more than 0"),
        ("[recording]\npre_event_s = 121\n", ":2: recording.pre_event_s must be between 0"),
        ("[camera]\naudio = 1\n", ":2: camera.audio must be true or false, not 1"),
        ("[dock]\nunit_keys = 'ab'\n", ":2: dock.unit_keys must be a list of strings"),
        (
            "[health]\nbattery_resume_percent = 2.0\n",
            ":2: health.battery_resume_percent (2) must be above battery_critical_percent (3)",
        ),
        (
            "[health]\novercheat_c = 70.0\n",
            ":2: unknown setting 'health.overcheat_c' (not a setting in [health]; "
            "did you mean 'health.overheat_c'?)",
        ),
    ],
)
def test_a_bad_recorder_config_is_refused_with_file_key_and_line(tmp_path, text, says):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        recorder_config.load(path)
    assert str(info.value).startswith(f"{path}{says}"), str(info.value)


def test_a_flag_is_checked_like_a_file():
    with pytest.raises(ConfigError, match=r"^command line: recording.segment_max_s must be"):
        recorder_config.load(None, {"recording.segment_max_s": 0})


def test_a_new_key_in_the_packaged_toml_just_works(tmp_path):
    """Another change adds a setting to the TOML before (or without) declaring it: it is
    read, typed by its default and checked; a new section too."""
    packaged = tmp_path / "dock.toml"
    text = dock_config.PACKAGE_DEFAULTS.read_text()
    assert "\nport = 8883\n" in text
    text = text.replace("\nport = 8883\n", "\nport = 8883\nqos = 1\n")
    packaged.write_text(text + "\n[tls]\nciphers = ['a']\n")
    config = loader.load(dock_config.DockConfig, packaged)
    assert config.mqtt["qos"] == 1 and config.mqtt.qos == 1
    assert dict(config.mqtt)["qos"] == 1  # **config["mqtt"] carries it
    assert config["tls"]["ciphers"] == ["a"]
    site = write(tmp_path, "[mqtt]\nqos = 'yes'\n")
    with pytest.raises(ConfigError, match=r":2: mqtt.qos must be an integer, not 'yes'"):
        loader.load(dock_config.DockConfig, packaged, site)
    assert loader.load(dock_config.DockConfig, packaged, None, {"mqtt.qos": 2}).mqtt["qos"] == 2


# -- hypothesis: whatever a file holds, the answer is a ConfigError, never a traceback ------
def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"k{i} = {toml_value(v)}" for i, v in enumerate(value.values())) + "}"
        )
    raise TypeError(value)


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.just("k"), inner, max_size=1)
    ),
    max_leaves=6,
)


def keys_of(schema: type[Config], packaged: Path) -> list[tuple[str, str]]:
    """(section, key) of every setting in the packaged file ("" = top level)."""
    data = tomllib.loads(Path(packaged).read_text())
    out = []
    for name, value in data.items():
        if isinstance(value, dict):
            out.extend((name, key) for key in value)
        else:
            out.append(("", name))
    return out


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_values_for_random_keys_never_give_a_traceback(tmp_path, data):
    schema, packaged = data.draw(st.sampled_from(SCHEMAS))
    section, key = data.draw(st.sampled_from(keys_of(schema, packaged)))
    if data.draw(st.booleans()):  # a key that does not exist, sometimes
        key = data.draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
    value = data.draw(values)
    text = (f"[{section}]\n" if section else "") + f"{key} = {toml_value(value)}\n"
    path = write(tmp_path, text)
    try:
        loader.load(schema, packaged, path)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        assert message.startswith(f"{path}:{2 if section else 1}: ") or message.startswith(
            f"{path}: not valid TOML"
        ), message
    # else: a value of the right type and range was drawn; it loaded


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_random_text_is_a_config_error_or_a_config(tmp_path, text):
    path = write(tmp_path, text)
    try:
        dock_config.load(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}") and "\n" not in str(exc)


def type_is(value, kind: str) -> bool:
    if kind == "a list of strings":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "a number":
        return type(value) in (int, float) and math.isfinite(value)
    if kind == "an integer":
        return type(value) is int
    return isinstance(value, str)


@settings(max_examples=200, deadline=None)
@given(value=values)
def test_a_wrong_type_is_always_named(value):
    """Each declared type refuses every value of another type, in the message's words;
    a value of the right type is refused only for its range."""
    for dotted, kind in [
        ("dock.bays", "a list of strings"),
        ("dock.timeout_s", "a number"),
        ("mqtt.port", "an integer"),
        ("dock.store", "a string"),
    ]:
        try:
            dock_config.load(None, {dotted: value})
        except ConfigError as exc:
            message = str(exc)
            if type_is(value, kind):
                assert message.startswith(f"command line: {dotted} must be "), message
                assert f"must be {kind}," not in message
            else:
                assert message.startswith(f"command line: {dotted} must be {kind}, not ")
        else:
            assert type_is(value, kind)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_the_dock_command_answers_a_bad_config_in_one_line(tmp_path, capsys, data):
    section, key = data.draw(st.sampled_from(keys_of(*SCHEMAS[1])))
    value = data.draw(values)
    path = write(tmp_path, f"[{section}]\n{key} = {toml_value(value)}\n")
    code = dock_main(["--config", str(path), "--store", str(tmp_path / "none"), "status"])
    err = capsys.readouterr().err
    assert code == 2  # the config, or else the missing store
    assert err.count("\n") == 1 and err.startswith("bodycam-dock: error: ")
