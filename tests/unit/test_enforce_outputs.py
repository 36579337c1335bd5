"""The topics the enforce agent declares at start: `lethe.commands` and the sink topics of the
tables a command can change."""

from __future__ import annotations

from lethe.agents.outputs import output_topic_names
from tests.unit.conftest import load_demo_policy


def test_commands_and_the_sink_topic_of_every_table_with_an_anonymise_or_delete_stage() -> None:
    names = output_topic_names(load_demo_policy())
    assert names[0] == "lethe.commands"
    assert "lethe.sink.public.connection_logs" in names, "delete stage"
    assert "lethe.sink.public.satisfaction_surveys" in names, "anonymise stage only"
    assert "lethe.sink.public.legal_holds" not in names, "a hold has no stage"
    assert len(set(names)) == len(names)
