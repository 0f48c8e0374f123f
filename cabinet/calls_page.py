"""The calls page: a month of the account's calls (the operator's local
month), filtered by direction and zone, with totals by zone and the same
rows as CSV. The prices are rating.telephony's, as recorded on each call;
this page only reads them."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from cabinet import labels, periods, spreadsheet, traffic_page
from cabinet.app import db
from cabinet.formatting import csv_number, locale_key, when
from rating import phones

blueprint = Blueprint("calls", __name__)

# Rows shown on the page; the CSV has them all.
PAGE_ROWS = 500

DIRECTIONS = {"out": _l("Outgoing"), "in": _l("Incoming"), "onnet": _l("To our subscribers")}
REASONS = {"rated": "", "package": _l("package minutes"), "unanswered": _l("not answered"),
           "incoming": _l("incoming"), "onnet": _l("free within the network"),
           "own": _l("to your own number"), "no_rate": _l("not charged yet"),
           "unknown_number": ""}


def phone_number(digits: str | None) -> str:
    """E.164 digits as "+7 495 111-00-00" for a Russian number, else "+digits"."""
    if not digits:
        return ""
    if len(digits) == 11 and digits[0] == "7":
        return f"+7 {digits[1:4]} {digits[4:7]}-{digits[7:9]}-{digits[9:]}"
    return "+" + digits if len(digits) > 6 else digits


def _filters() -> tuple[str | None, str | None]:
    direction = request.args.get("direction") or None
    if direction not in DIRECTIONS:
        direction = None
    zone = (request.args.get("zone") or "").strip()[:64] or None
    return direction, zone


def _month():
    today = periods.local_today(current_app.config["BABEL_DEFAULT_TIMEZONE"])
    return traffic_page.past_month(request.args.get("month"), today), today


@blueprint.route("/calls")
@login_required
def calls_page():
    direction, zone = _filters()
    try:
        period, today = _month()
    except periods.PeriodError as error:
        return render_template("calls.html", error=labels.error_text(error), period=None), 400
    account_id = current_user.account_id
    session = db()
    rows = list(session.scalars(phones.calls_query(
        period.start_utc, period.end_utc, account_id=account_id, direction=direction,
        zone=zone).limit(PAGE_ROWS + 1)))
    totals = phones.zone_totals(session, account_id, period.start_utc, period.end_utc,
                                direction=direction, zone=zone)
    return render_template(
        "calls.html", period=period, nav=traffic_page.month_nav(period, today),
        rows=rows[:PAGE_ROWS], more=len(rows) > PAGE_ROWS, totals=totals,
        total_charge=sum((t["charge"] for t in totals), start=0),
        total_calls=sum(t["calls"] for t in totals),
        total_seconds=sum(t["seconds"] for t in totals),
        zones=phones.zones_of(session, account_id), direction=direction, zone=zone,
        directions=DIRECTIONS, reasons=REASONS, phone_number=phone_number,
        month=period.first_day.strftime("%Y-%m"))


def minutes(seconds: int) -> str:
    """"12:05": minutes and seconds."""
    return f"{seconds // 60}:{seconds % 60:02d}"


@blueprint.route("/calls.csv")
@login_required
def calls_csv():
    direction, zone = _filters()
    try:
        period, _today = _month()
    except periods.PeriodError as error:
        return Response(labels.error_text(error) + "\n", status=400, mimetype="text/plain")
    rows = db().scalars(phones.calls_query(period.start_utc, period.end_utc,
                                           account_id=current_user.account_id,
                                           direction=direction, zone=zone))
    body = spreadsheet.csv_text(
        [_("Time"), _("From number"), _("To number"), _("Direction"), _("Zone"), _("Duration, s"),
         _("Billed, s"), _("Package, s"), _("Price per minute"), _("Amount")],
        ([when(c.start_at, "yyyy-MM-dd HH:mm:ss"), phone_number(c.calling),
          phone_number(c.called), str(DIRECTIONS.get(c.direction, "")), c.zone or "",
          c.billsec, c.billed_seconds, c.free_seconds,
          csv_number(c.price_per_minute) if c.price_per_minute is not None else "",
          csv_number(c.charge)] for c in rows),
        text_columns={1, 2, 3, 4}, delimiter=spreadsheet.delimiter(locale_key()))
    name = f"calls-{period.first_day:%Y-%m}.csv"
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def install(app) -> None:
    app.register_blueprint(blueprint)
    app.jinja_env.filters.update(phone_number=phone_number, minutes=minutes)
