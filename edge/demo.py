"""`make demo`: a demo store that runs out of the box, with a walk-through printed."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from edge.config import load_config
from edge.demo_data import load_demo
from edge.services.context import open_till


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a Huiyuan demo store")
    parser.add_argument("--dir", default="var/demo", help="where the demo store keeps its files")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    port = args.port
    while not _port_free("127.0.0.1", port):
        port += 1
    workdir = Path(args.dir).resolve()
    config_path = workdir / "edge.toml"
    workdir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(
        f'data_dir = "{workdir / "edge"}"\n\n[store]\ncode = "S001"\nname = "会员示范店"\n\n[http]\nport = {port}\n'
        # no HQ here: the store's own policy lets the walk-through pay with balances
        '\n[offline.stored_value]\nmode = "floor_limit"\ndaily_limit = 20000\n'
        '\n[offline.points]\nmode = "floor_limit"\ndaily_limit = 5000\n',
        encoding="utf-8",
    )
    cfg = load_config(config_path)
    till = open_till(cfg, create_key=True)
    added = load_demo(till)
    till.db.close()
    base = f"http://127.0.0.1:{port}/api/v1"
    print(f"demo store S001 ready in {workdir} (added {added})")
    print(f"""
Try it (staff 1001 PIN 1234 is a cashier, 9001 PIN 9999 a manager; member 张三 card C0001, password 123456):
  TOKEN=$(curl -s -XPOST {base}/session -H 'Content-Type: application/json' \\
          -d '{{"staff_code":"1001","pin":"1234"}}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["token"])')
  curl -s "{base}/members?q=zs" -H "Authorization: Bearer $TOKEN"
  curl -s -XPOST {base}/sales -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
       -d '{{"member":{{"card_no":"C0001"}},"lines":[{{"sku":"P0002","qty":2}},{{"sku":"P0009","qty":3}}],"tenders":[{{"kind":"cash","amount":20000}}]}}'
  curl -s {base}/status -H "Authorization: Bearer $TOKEN"
Stop with Ctrl-C.
""")
    from edge.cli import main as cli_main

    cli_main(["-c", str(config_path), "serve"], standalone_mode=True)


if __name__ == "__main__":
    main()
