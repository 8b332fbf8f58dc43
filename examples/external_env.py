#!/usr/bin/env python3
"""An external environment for grpo's multi-turn rollouts (env.name: external, env.command:
"python3 examples/external_env.py"): a calculator tool. Standard library only.

grpo starts this process and speaks JSON lines over its stdin/stdout, one message at a time:
  {"type": "reset", "episode": N, "question": "...", "answer": "..."}  -> any JSON object
  {"type": "step", "episode": N, "turn": "...the model's turn, ending with env.turn_end..."}
      -> {"observation": "...", "done": false, "tool_call": true, "tool_error": false}
An episode's messages always come to the same process. The observation is appended to the model's
response as it is (tokenized once), and the model continues; "done": true ends the episode. A reply
later than env.tool_seconds, a malformed one or a crash ends the episode with the error as its last
observation, and grpo starts this process again.

Here: the model writes <code>EXPRESSION</code>; the reply is <output>VALUE</output>, computed by a
small arithmetic evaluator (+ - * / // % ** and parentheses, on integers and decimals). After three
calls the episode ends.
"""
import ast
import json
import operator
import sys

OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
       ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
       ast.USub: operator.neg, ast.UAdd: operator.pos}


def evaluate(node):
    if isinstance(node, ast.Expression):
        return evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        left, right = evaluate(node.left), evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in OPS:
        return OPS[type(node.op)](evaluate(node.operand))
    raise ValueError(f"not arithmetic: {ast.dump(node)[:60]}")


def main():
    calls = {}  # episode -> calls so far
    for line in sys.stdin:
        msg = json.loads(line)
        episode = msg["episode"]
        if msg["type"] == "reset":
            calls[episode] = 0
            reply = {"ok": True}
        else:
            calls[episode] = calls.get(episode, 0) + 1
            turn = msg["turn"]
            start, end = turn.rfind("<code>"), turn.rfind("</code>")
            error = False
            try:
                value = evaluate(ast.parse(turn[start + 6:end].strip(), mode="eval"))
                text = str(int(value)) if float(value).is_integer() else f"{value:.6g}"
            except Exception as e:  # the model sees its mistake
                text, error = f"error: {e}", True
            reply = {"observation": f"<output>\n{text}\n</output>\n", "done": calls[episode] >= 3,
                     "tool_call": True, "tool_error": error}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
