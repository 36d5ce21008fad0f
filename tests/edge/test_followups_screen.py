"""Follow-up calls on the cashier's screen, in a real browser: the clerk presses F10, sees
today's calls (the overdue one in red), records an outcome by keyboard and touch, and
sees a member's open calls in the member panel (screenshots till-followups-*.png)."""

from __future__ import annotations

import json

from selenium.webdriver.common.keys import Keys

from edge.models import FollowUp, Member, Outbox
from tests.browser import shot
from tests.edge.test_followups import send_down, task
from tests.edge.till_screen import by_id, sign_in, till_screen, type_into, wait, wait_text


def calls(driver) -> list:
    return driver.find_elements("css selector", "#fu-list button")


def test_the_clerk_sees_todays_calls_and_records_an_outcome(demo_till):
    one, two, three = Member.select().order_by(Member.id).limit(3)
    today, overdue, someone_elses = (
        task(1, one.id),
        task(
            2,
            two.id,
            due_on="2026-11-19",
            kind="dormant",
            kind_label="沉睡会员回访",
            reason="90 天未消费 (最后一次 2026-08-21): 询问原因, 邀请回店",
        ),
        task(3, three.id, staff_code="9001"),
    )
    send_down(demo_till, today, overdue, someone_elses)
    with till_screen(demo_till, 1024, 768) as (driver, _base):
        sign_in(driver)
        driver.switch_to.active_element.send_keys(Keys.F10)
        wait(driver, lambda d: len(calls(d)) == 2, "two calls listed")
        first, second = calls(driver)
        assert first.get_attribute("data-id") == overdue.key  # the overdue one first
        assert "逾期" in first.text and "沉睡会员回访" in first.text
        late = first.find_element("css selector", ".fu-due")
        assert late.value_of_css_property("color") == "rgba(179, 38, 30, 1)"  # red
        assert one.name not in second.text and f"*******{one.phone_tail}" in second.text
        assert driver.switch_to.active_element == first
        wait_text(driver, "fu-count", "逾期 1 个")
        shot(driver, "till-followups-list")
        # Enter opens the call; Space ticks 联系上; a touch gives 4 stars; Enter in the
        # last box saves
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        wait(driver, lambda d: by_id(d, "fu-form").is_displayed(), "the outcome form")
        assert "逾期" in by_id(driver, "fu-who").text
        driver.switch_to.active_element.send_keys(Keys.SPACE)
        driver.find_element("css selector", "#fu-stars input[value='4']").find_element(
            "xpath", ".."
        ).click()
        type_into(driver, "fu-said", "最近出差, 下周来店", enter=False)
        type_into(driver, "fu-complaint", "上次排队太久", enter=False)
        shot(driver, "till-followups-form")
        type_into(driver, "fu-request", "想要新品小样")
        wait_text(driver, "error", "已记录回访结果, 投诉已交店长处理")
        wait(driver, lambda d: len(calls(d)) == 1, "one call left")
        shot(driver, "till-followups-saved")
        sent = [
            json.loads(o.payload)["body"]
            for o in Outbox.select().where(Outbox.kind == "followup_outcome")
        ]
        assert len(sent) == 1
        assert {
            k: sent[0][k]
            for k in ("followup_id", "reached", "satisfaction", "complaint", "request")
        } == {
            "followup_id": overdue.key,
            "reached": True,
            "satisfaction": 4,
            "complaint": "上次排队太久",
            "request": "想要新品小样",
        }
        assert FollowUp.get_by_id(overdue.key).status == "done"
        # the member panel: the member's open call, which opens the same form
        driver.switch_to.active_element.send_keys(Keys.ESCAPE)
        wait(driver, lambda d: not by_id(d, "followups-dialog").is_displayed(), "dialog closed")
        type_into(driver, "member-q", one.name)
        # one match is taken at once; several are listed to pick from
        wait(
            driver,
            lambda d: (
                d.find_elements("css selector", "#member-results button")
                or "walkin" not in by_id(d, "member").get_attribute("class")
            ),
            "the member found",
        )
        for pick in driver.find_elements("css selector", "#member-results button")[:1]:
            pick.click()
        wait_text(driver, "member-followups", "新会员回访")
        shot(driver, "till-followups-member")
        by_id(driver, "member-followups").find_element("css selector", "button").click()
        wait(driver, lambda d: by_id(d, "fu-form").is_displayed(), "the form from the panel")
        by_id(driver, "fu-reached-no").find_element("xpath", "..").click()
        by_id(driver, "fu-save").click()
        wait_text(driver, "error", "已记录回访结果")
        wait(driver, lambda d: by_id(d, "member-followups").text == "", "the panel's call done")
        assert FollowUp.get_by_id(today.key).status == "done"
