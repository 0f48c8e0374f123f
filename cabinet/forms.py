"""WTForms for the cabinet; every POST carries Flask-WTF's CSRF token."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DecimalField, HiddenField, PasswordField, StringField
from wtforms.validators import (DataRequired, EqualTo, InputRequired, Length, Optional,
                                ValidationError)

from config.db import money


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


def money_amount(form, field):
    """An amount the ledger can hold: DecimalField alone lets NaN, Infinity,
    1E+999999 and 0.001 through, and rating refuses those with a ValueError
    or an ArithmeticError, not a DomainError (the page then answered 500)."""
    if field.data is None:
        return  # not a number at all: DecimalField has said so
    try:
        money(field.data)
    except (ValueError, TypeError, ArithmeticError):
        raise ValidationError(_l("The amount must look like 100 or 99.50.")) from None


class PromisedForm(FlaskForm):
    # Decimal, never float; the limits themselves are rating.promised's.
    amount = DecimalField(_l("Amount"), places=2, validators=[InputRequired(), money_amount])


class TurboForm(FlaskForm):
    """Buy a turbo. ``request_id`` is made when the page is drawn, so a form
    sent twice (a double tap, a retry) buys once."""

    request_id = HiddenField(validators=[DataRequired(), Length(min=8, max=64)])
