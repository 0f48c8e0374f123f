"""WTForms for the cabinet; every POST carries Flask-WTF's CSRF token."""

from __future__ import annotations

from decimal import Decimal

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DecimalField, HiddenField, PasswordField, StringField
from wtforms.validators import (DataRequired, EqualTo, InputRequired, Length, Optional,
                                ValidationError)

# The ledger's NUMERIC(14, 2): at most 12 digits before the point, 2 after.
MONEY_INTEGER_DIGITS = 12


def money_amount(_form, field) -> None:
    """An amount of money as a person types it: 100, 99.50. Decimal reads
    "NaN", "Infinity", "1e400" and "10.005" too; none of them is money, and
    left in they reach the ledger's arithmetic and fail there."""
    value = field.data
    if value is None:
        return
    if (not isinstance(value, Decimal) or not value.is_finite()
            or value.as_tuple().exponent < -2
            or (value != 0 and value.adjusted() >= MONEY_INTEGER_DIGITS)):
        raise ValidationError(_l("Enter an amount like 100 or 99.50."))


class LoginForm(FlaskForm):
    login = StringField(_l("Login"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])


class LanguageForm(FlaskForm):
    lang = HiddenField(validators=[DataRequired(), Length(max=8)])
    next = HiddenField()


class LogoutForm(FlaskForm):
    """Only the CSRF token: logging out is a POST."""


class ContactsForm(FlaskForm):
    email = StringField(_l("E-mail"), validators=[Optional(), Length(max=200)])
    phone = StringField(_l("Mobile phone"), validators=[Optional(), Length(max=40)])
    phone_landline = StringField(_l("Landline phone"), validators=[Optional(), Length(max=40)])


class PasswordForm(FlaskForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired(),
                                                                 Length(max=256)])
    new = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(_l("New password again"), validators=[
        DataRequired(), EqualTo("new", message=_l("The two new passwords differ."))])


class EndSessionsForm(FlaskForm):
    """Only the CSRF token: "log out on every device"."""


class PromisedForm(FlaskForm):
    # Decimal, never float; the limits themselves are rating.promised's.
    amount = DecimalField(_l("Amount"), places=2, validators=[InputRequired(), money_amount])


class TurboForm(FlaskForm):
    """Buy a turbo. ``request_id`` is made when the page is drawn, so a form
    sent twice (a double tap, a retry) buys once."""

    request_id = HiddenField(validators=[DataRequired(), Length(min=8, max=64)])
