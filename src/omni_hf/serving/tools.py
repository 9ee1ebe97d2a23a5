"""Function calling in the Thinker's chat format, the way Qwen2.5 models are prompted for tools.

The tools go into the system message (`tools_system_prompt`): the system text, then a `# Tools` section with one
JSON signature per line inside `<tools></tools>`, and the instruction to answer a call as
`<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`. A call the model made is kept in the conversation in
that form (`render_tool_call`), a function's result comes back as a user turn `<tool_response>\\n...\\n</tool_response>`
(`render_tool_response`). `ToolCallParser` splits a streamed reply into plain text and the calls it holds.
"""

import json
import uuid

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
_TOOLS_HEADER = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}'
    "\n</tool_call>"
)


def check_tools(tools, param: str = "tools") -> list[dict]:
    """`tools` as a list of `{"type": "function", "function": {...}}` (chat) or flat `{"type": "function",
    "name": ...}` (realtime) definitions → the chat form. Raises ValueError naming the bad entry."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ValueError(f"`{param}` must be a list of function definitions")
    checked = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise ValueError(f"`{param}[{i}]` must be an object of type 'function'")
        function = tool.get("function", tool)
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"`{param}[{i}]` needs a function `name`")
        spec = {"name": name}
        for key in ("description", "parameters"):
            if function.get(key) is not None:
                spec[key] = function[key]
        checked.append({"type": "function", "function": spec})
    return checked


def tool_choice_instruction(tool_choice, tools: list[dict]) -> str:
    """A line added to the tools section for `tool_choice` ("auto": nothing; "none": no tools are shown at all;
    "required" or a named function: the model is told to call one)."""
    if tool_choice in (None, "auto", "none"):
        return ""
    if tool_choice == "required":
        return "\n\nYou must call one of the functions above."
    name = tool_choice.get("name") or (tool_choice.get("function") or {}).get("name")
    return f"\n\nYou must call the function {name}."


def check_tool_choice(tool_choice, tools: list[dict], param: str = "tool_choice"):
    if tool_choice in (None, "auto", "none", "required"):
        return tool_choice
    if isinstance(tool_choice, dict):
        name = tool_choice.get("name") or (tool_choice.get("function") or {}).get("name")
        if name in {t["function"]["name"] for t in tools}:
            return tool_choice
        raise ValueError(f"`{param}` names the function {name!r}, which is not in `tools`")
    raise ValueError(f"`{param}` must be 'auto', 'none', 'required' or a function, got {tool_choice!r}")


def tools_system_prompt(system: str, tools: list[dict], tool_choice=None) -> str:
    """`system` with the tools section after it (unchanged without tools or with tool_choice "none")."""
    if not tools or tool_choice == "none":
        return system
    lines = "".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools)
    return system + _TOOLS_HEADER + lines + _TOOLS_FOOTER + tool_choice_instruction(tool_choice, tools)


def render_tool_call(name: str, arguments) -> str:
    """One call as the model writes it (`arguments`: a JSON string or an object)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass
    return f'{TOOL_CALL_OPEN}\n{{"name": "{name}", "arguments": {json.dumps(arguments, ensure_ascii=False)}}}\n{TOOL_CALL_CLOSE}'


def render_tool_response(output: str) -> str:
    return f"<tool_response>\n{output}\n</tool_response>"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class ToolCallParser:
    """Split streamed reply text into the plain text (`feed` returns what may be shown now) and the calls inside
    `<tool_call>...</tool_call>` (`calls`: `{"id", "name", "arguments" (JSON string)}`); a block that is not valid
    JSON with a `name` stays plain text."""

    def __init__(self):
        self.buffer, self.calls, self.in_call = "", [], False

    def feed(self, text: str) -> str:
        self.buffer += text
        shown = ""
        while True:
            if not self.in_call:
                at = self.buffer.find(TOOL_CALL_OPEN)
                if at < 0:  # keep a possible start of the tag back
                    keep = max((k for k in range(1, len(TOOL_CALL_OPEN)) if self.buffer.endswith(TOOL_CALL_OPEN[:k])),
                               default=0)  # fmt: skip
                    cut = len(self.buffer) - keep
                    shown, self.buffer = shown + self.buffer[:cut], self.buffer[cut:]
                    return shown
                shown += self.buffer[:at]
                self.buffer, self.in_call = self.buffer[at + len(TOOL_CALL_OPEN) :], True
            end = self.buffer.find(TOOL_CALL_CLOSE)
            if end < 0:
                return shown
            block, self.buffer, self.in_call = self.buffer[:end], self.buffer[end + len(TOOL_CALL_CLOSE) :], False
            call = _parse_call(block)
            if call is None:
                shown += TOOL_CALL_OPEN + block + TOOL_CALL_CLOSE
            else:
                self.calls.append(call)

    def finish(self) -> str:
        """The text still held back (an unclosed `<tool_call>` is plain text)."""
        rest = (TOOL_CALL_OPEN if self.in_call else "") + self.buffer
        self.buffer, self.in_call = "", False
        return rest


def _parse_call(block: str) -> dict | None:
    try:
        data = json.loads(block.strip())
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {"id": new_call_id(), "name": data["name"], "arguments": arguments}


def parse_tool_calls(text: str) -> tuple[str, list[dict]]:
    """A whole reply → `(plain text, calls)`."""
    parser = ToolCallParser()
    shown = parser.feed(text) + parser.finish()
    return shown, parser.calls


__all__ = [
    "ToolCallParser",
    "check_tool_choice",
    "check_tools",
    "parse_tool_calls",
    "render_tool_call",
    "render_tool_response",
    "tools_system_prompt",
]
