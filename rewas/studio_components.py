"""The studio's input components: gradio's own, answering an API call whose value they cannot read (a number
that is not one, a choice not on the list) with one line, and leaving no traceback in the server's log (gradio
prints one for its own errors). Subclasses, not patched instances: gradio rebuilds a component from its class when
an event updates it. `is_template`: the page draws each as its parent. Imported by the studio only (gradio is
an extra)."""

from __future__ import annotations

import gradio as gr

from .errors import one_line


def _read(preprocess, component, payload):
    try:
        return preprocess(payload)
    except gr.Error as e:
        raise gr.Error(one_line(Exception(e.message)), print_exception=False) from None
    except Exception:
        label = component.label or type(component).__name__.lower()
        raise gr.Error(f"{label}: cannot use {str(payload)[:80]!r}", print_exception=False) from None


# gradio names a template's page component after its first base: each class derives from gradio's own alone
class Video(gr.Video):
    is_template = True

    def preprocess(self, payload):
        return _read(super().preprocess, self, payload)


class Textbox(gr.Textbox):
    is_template = True

    def preprocess(self, payload):
        return _read(super().preprocess, self, payload)


class Dropdown(gr.Dropdown):
    is_template = True

    def preprocess(self, payload):
        return _read(super().preprocess, self, payload)


class Number(gr.Number):
    is_template = True

    def preprocess(self, payload):
        return _read(super().preprocess, self, payload)


class Slider(gr.Slider):
    is_template = True

    def preprocess(self, payload):
        return _read(super().preprocess, self, payload)


class File(gr.File):
    is_template = True

    def preprocess(self, payload):
        return _read(super().preprocess, self, payload)


class Checkbox(gr.Checkbox):
    is_template = True

    def preprocess(self, payload):
        return _read(super().preprocess, self, payload)


class TakeNumber(Dropdown):
    """The re-open list: the page offers the kept takes; the API takes any take's number (an int)."""

    def api_info(self):
        return {"type": "integer", "description": "a kept take's number"}
