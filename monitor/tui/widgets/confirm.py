"""Type-the-name confirmation: the destructive button is enabled only while the input matches exactly.

The same gesture as the CLI's `confirm_by_name`: an operator who types the check's name has read which
check this is, which a reflexive Enter or `y` does not prove.
"""

from __future__ import annotations

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label


class TypeToConfirm(Vertical):
    """A prompt, an input and the button it arms; posts `Confirmed` on the button or Enter once armed.

    The prompt has a line of its own, so that the input and both buttons fit beside each other in 80 columns
    whatever the length of the name to type."""

    DEFAULT_CSS = """
    TypeToConfirm { height: auto; margin-top: 1; }
    TypeToConfirm > Horizontal { height: auto; }
    TypeToConfirm Input { width: 1fr; min-width: 20; }
    TypeToConfirm Button { margin-left: 1; }
    """

    class Confirmed(Message):
        """The operator typed the name and pressed the button (or Enter)."""

    def __init__(self, expected: str, action: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.expected = expected
        self.action = action

    def compose(self) -> ComposeResult:
        yield Label(f"Type [b]{self.expected}[/b] to confirm:")
        with Horizontal():
            yield Input(placeholder="the name, exactly", id="confirm-name", select_on_focus=False)
            yield Button(self.action, variant="error", id="confirm-button", disabled=True)
            yield Button("Cancel", id="cancel-button")

    @property
    def armed(self) -> bool:
        """Whether the typed text is exactly the expected name (no trimming: what is typed is what counts)."""
        return self.query_one(Input).value == self.expected and not self.query_one(Input).disabled

    def set_action(self, label: str) -> None:
        self.action = label
        self.query_one("#confirm-button", Button).label = label

    def enable(self, enabled: bool) -> None:
        """Allow (or forbid) confirming at all, e.g. while the preview loads or when the fix is blocked."""
        self.query_one(Input).disabled = not enabled
        self._sync()

    def focus_input(self) -> None:
        self.query_one(Input).focus()

    def _sync(self) -> None:
        self.query_one("#confirm-button", Button).disabled = not self.armed

    def on_key(self, event: events.Key) -> None:
        """Typing while a button has the focus (after Tab) types into the name, rather than letting a later
        Enter press whichever button it landed on."""
        field = self.query_one(Input)
        if event.is_printable and event.character and self.app.focused is not field and not field.disabled:
            event.stop()
            event.prevent_default()
            field.focus()
            field.insert_text_at_cursor(event.character)

    @on(Input.Changed, "#confirm-name")
    def _changed(self) -> None:
        self._sync()

    @on(Input.Submitted, "#confirm-name")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.armed:
            self.post_message(self.Confirmed())
        elif not self.query_one(Input).disabled:  # Enter on a near miss did nothing, silently
            self.app.notify(f"{event.value!r} is not {self.expected!r}: type the name exactly to confirm",
                            severity="warning", markup=False)

    @on(Button.Pressed, "#confirm-button")
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if self.armed:
            self.post_message(self.Confirmed())
