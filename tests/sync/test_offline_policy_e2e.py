"""End to end through a real broker: HQ publishes offline policies (its API), the store
receives them, and an offline spend is refused or allowed by the one the store holds."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from core.errors import Forbidden, InsufficientFunds
from edge.api import create_app as edge_app
from edge.models import Sale
from edge.services import staff as staff_svc
from edge.services.offline import policy_in_force
from edge.sync.apply import down_cursor
from hq.api import create_app as hq_app
from hq.changes import latest_change_seq
from hq.cli import main as hq_cli
from hq.config import HqConfig
from hq.models import Member as HqMember
from hq.models import bind
from tests.hq.signin import bearer_client
from tests.sync.helpers import announce_hq_offline, wait_until
from tests.sync.test_authorization import chain, sv_sale  # noqa: F401  (the fixture)


def held(till, kind: str = "stored_value") -> tuple[str, int, str, str | None, int | None]:
    f = policy_in_force(till.config, kind)
    return f.policy.mode, f.policy.daily_limit, f.source, f.scope, f.version


def test_hq_published_policy_decides_offline_spends_at_the_store(chain, hq_db_url):  # noqa: F811
    till, store = chain["till"], chain["till"].store
    # the store's own file says floor_limit 20000 (tests/edge/conftest.make_config)
    assert held(till) == ("floor_limit", 20000, "local config", None, None)
    hq_db = HqMember._meta.database
    app = hq_app(HqConfig(mqtt=chain["mosquitto"].hq_settings("hq-api")), db=hq_db)
    hq = bearer_client(app, hq_db, "membership")
    wait_until(lambda: down_cursor() == latest_change_seq(), 20, "the store caught up")

    # HQ's ingest is down and says so: the till decides every spend offline, at once;
    # the store's agent still takes the change pages HQ's API pushes to the broker
    announce_hq_offline(chain)

    first = sv_sale(chain, 1000)
    assert Sale.get_by_id(first["sale_id"]).body["offline"] is True  # by the file

    res = hq.put("/api/offline-policies/stored_value", json={"mode": "online_only"})
    assert res.status_code == 200 and res.json["pushed"] is True
    other = {"mode": "floor_limit", "daily_limit": 90000, "store": "ELSEWHERE"}
    assert hq.put("/api/offline-policies/stored_value", json=other).status_code == 200
    wait_until(lambda: held(till)[2] == "hq", 20, "the chain's policy at the store")
    assert held(till) == ("online_only", 0, "hq", "chain", 1)  # another store's is not ours
    with pytest.raises(Forbidden, match="在线授权"):
        sv_sale(chain, 1000)

    mine = {"mode": "floor_limit", "daily_limit": 1500, "store": store, "staff": "hq-li"}
    assert hq.put("/api/offline-policies/stored_value", json=mine).status_code == 200
    wait_until(lambda: held(till)[3] == "store", 20, "the store's override at the store")
    assert held(till) == ("floor_limit", 1500, "hq", "store", 1)
    sale = sv_sale(chain, 500)  # with the 1000 spent before: 1500 offline today
    assert Sale.get_by_id(sale["sale_id"]).body["offline"] is True
    with pytest.raises(InsufficientFunds, match="每日限额 ¥15.00"):
        sv_sale(chain, 1)

    token, _ = staff_svc.sign_in(till, "1001", "1234")
    headers = {"Authorization": f"Bearer {token}"}
    status = edge_app(till).test_client().get("/api/v1/status", headers=headers)
    status = status.json["offline_policies"]
    assert status["stored_value"]["source"] == "hq" and status["stored_value"]["scope"] == "store"
    assert status["points"]["source"] == "local config"

    res = hq.delete(f"/api/offline-policies/stored_value?store={store}&staff=hq-li")
    assert res.status_code == 200 and res.json["pushed"] is True
    wait_until(lambda: held(till)[3] == "chain", 20, "the override removed at the store")
    with pytest.raises(Forbidden, match="在线授权"):
        sv_sale(chain, 1)

    # `huiyuan-hq offline-policy set` pushes too
    db = HqMember._meta.database
    cli = ["--database-url", hq_db_url, *chain["mosquitto"].cli_args("hq"), "offline-policy"]
    points = ["set", "--kind", "points", "--mode", "floor_limit", "--daily-limit", "300"]
    result = CliRunner().invoke(hq_cli, [*cli, *points, "--store", store])
    bind(db, create=False)  # the CLI bound HQ's models to its own connection
    assert result.exit_code == 0, result.output
    wait_until(lambda: held(till, "points")[2] == "hq", 20, "the CLI's policy at the store")
    assert held(till, "points") == ("floor_limit", 300, "hq", "store", 1)
