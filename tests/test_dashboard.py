"""`grporm dashboard` with the real wandb-workspaces and wandb packages, cut off where the network starts.

Two boundaries are replaced, nothing inside the packages: our own reachability check opens a TCP
connection (`socket.create_connection`), and wandb's public API hands every request to its
wandb-core sidecar (`ServiceApi.send_api_request`), which makes the HTTP call. A small fake W&B
server answers there, so the report's GraphQL mutation is checked exactly as it would be sent.
"""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from grporm.cli import app
from grporm.tracking import wandb_tools

pytest.importorskip("wandb_workspaces")
from wandb.apis.public import service_api  # noqa: E402
from wandb.proto import wandb_api_pb2  # noqa: E402

VIEW_ID = "VmlldzoxMjM0NQ=="


class FakeWandbServer:
    """Answers wandb-core API requests for a server that knows `projects` (entity/project)."""

    def __init__(self, projects: set[str]):
        self.projects = projects
        self.requests: list[tuple[str, dict]] = []  # (GraphQL operation name, variables)

    def send(self, _service, request, timeout=None):
        if request.WhichOneof("request") != "graphql_request":  # credential checks: accepted
            return wandb_api_pb2.ApiResponse()
        query = request.graphql_request.query
        variables = json.loads(request.graphql_request.variables_json)
        self.requests.append((query.split("(")[0].split()[-1], variables))
        if "ProjectInternalId" in query:
            known = f"{variables['entityName']}/{variables['projectName']}" in self.projects
            data = {"project": {"id": "UHJvamVjdDox", "internalId": "p-1"} if known else None}
        elif "upsertView" in query:
            data = {"upsertView": {"view": {
                "id": VIEW_ID, "name": variables["name"], "displayName": variables["displayName"],
                "description": variables["description"], "spec": variables["spec"],
                "project": {"name": variables["projectName"], "entityName": variables["entityName"]}}}}
        elif "GetProjects" in query:
            data = {"models": {"edges": [], "pageInfo": {"endCursor": None, "hasNextPage": False}}}
        else:  # CreateProject and anything else: the answer is not read
            data = {}
        return wandb_api_pb2.ApiResponse(graphql_response=wandb_api_pb2.GraphQLResponse(data_json=json.dumps(data)))


class Reachable:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def server(monkeypatch) -> FakeWandbServer:
    fake = FakeWandbServer({"team/proj"})
    monkeypatch.setattr(service_api.ServiceApi, "send_api_request", lambda self, req, timeout=None: fake.send(self, req))
    monkeypatch.setattr(wandb_tools.socket, "create_connection", lambda *a, **k: Reachable())
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # wandb.Api() wants credentials; the fake accepts them
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return fake


def test_dashboard_saves_a_report_grouped_like_the_tables(server):
    result = CliRunner().invoke(app, ["dashboard", "team/proj"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert result.output.strip().endswith(f"/team/proj/reports/GRPO-RM-vs-CE--{VIEW_ID}")
    (upsert,) = [v for name, v in server.requests if name == "upsertView"]
    assert (upsert["entityName"], upsert["projectName"], upsert["displayName"], upsert["type"]) == (
        "team", "proj", "GRPO-RM vs CE", "runs")
    grids = [b["metadata"] for b in json.loads(upsert["spec"])["blocks"] if b["type"] == "panel-grid"]
    assert len(grids) == 2
    for grid in grids:
        (runset,) = grid["runSets"]
        assert [(g["section"], g["name"]) for g in runset["grouping"]] == [("config", "experiment.value"),
                                                                        ("config", "method.value")]
        (only,) = runset["filters"]["filters"]
        assert (only["key"]["name"], only["op"], only["value"]) == ("state", "=", "finished")
    plotted = [[m for p in grid["panelBankSectionConfig"]["panels"] for m in p["config"]["metrics"]] for grid in grids]
    assert plotted[0] == [key for _, key in wandb_tools.DASHBOARD_BARS]
    assert plotted[1] == [key for _, key in wandb_tools.DASHBOARD_LINES]


def test_dashboard_of_an_unknown_project_is_one_line(server):
    result = CliRunner().invoke(app, ["dashboard", "team/nothing"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: cannot create a W&B report in team/nothing: ValueError:")
    assert not [name for name, _ in server.requests if name == "upsertView"]  # nothing was saved


def test_dashboard_unreachable_is_one_line_before_any_request(server, monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(wandb_tools.socket, "create_connection", refuse)
    result = CliRunner().invoke(app, ["dashboard", "team/proj"])
    assert result.exit_code == 2 and "W&B is unreachable" in result.output and result.output.count("\n") == 1
    assert server.requests == []
