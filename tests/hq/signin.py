"""Signing in to HQ in tests: an account of a role, a console session the way a browser
gets one (the sign-in form, its cookie, the CSRF token from the page), a bearer token."""

from __future__ import annotations

import re
import uuid

import peewee as pw
from flask import Flask
from flask.testing import FlaskClient

from hq.access import sessions, users

PASSWORD = "Test-pass-2026"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
FORM_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def make_user(
    db: pw.Database, role: str, scope: str | None = None, username: str | None = None
) -> str:
    username = username or f"{role}-{uuid.uuid4().hex[:6]}"
    users.add_user(db, username, PASSWORD, role, scope=scope, display_name=username, by="test")
    return username


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD) -> FlaskClient:
    """Sign ``client`` in through the form; afterwards it sends the session's CSRF token
    with every request, as the console's script does."""
    form = client.get("/login").get_data(as_text=True)
    csrf = FORM_CSRF.search(form).group(1)
    resp = client.post("/login", data={"username": username, "password": password, "csrf": csrf})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    page = client.get("/").get_data(as_text=True)
    match = CSRF_META.search(page)
    assert match, page
    client.environ_base["HTTP_X_CSRF_TOKEN"] = match.group(1)
    return client


def session_client(app: Flask, db: pw.Database, role: str, scope: str | None = None) -> FlaskClient:
    """A test client signed in as a new account of ``role``."""
    return sign_in(app.test_client(), make_user(db, role, scope))


def bearer_client(app: Flask, db: pw.Database, role: str, scope: str | None = None) -> FlaskClient:
    """A test client that sends a new integration token of ``role``."""
    token, _ = sessions.issue_token(db, f"test {role}", role, scope=scope, by="test")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def browser_sign_in(driver, url: str, username: str, password: str = PASSWORD) -> None:
    """Open ``url`` in a real browser and sign in on the form it redirects to; the
    browser lands on ``url``."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
