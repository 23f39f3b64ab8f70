"""Just enough SQL lexing to find what the stand-in must treat as CockroachDB does.

The lexer knows PostgreSQL's token boundaries (comments, '...', E'...', "...",
$tag$...$tag$) so a keyword inside a string or comment is never mistaken for one.
It does not parse SQL; it looks at the keyword sequence that starts each statement.
"""

import re

_IDENT_START = re.compile(r"[A-Za-z_\u0080-\uffff]")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$\u0080-\uffff]")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


class Token:
    __slots__ = ("kind", "text", "start", "end", "value")

    def __init__(self, kind, text, start, end, value=None):
        self.kind = kind  # word, qident, string, semi, other
        self.text = text
        self.start = start
        self.end = end
        self.value = value  # words: lower-cased; strings: the decoded value

    def __repr__(self):
        return "Token(%s,%r)" % (self.kind, self.text)


def _decode_escape_string(body):
    out = []
    i = 0
    simple = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            n = body[i + 1]
            if n in simple:
                out.append(simple[n])
                i += 2
                continue
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            if m:
                out.append(chr(int(m.group(0), 8)))
                i += 1 + len(m.group(0))
                continue
            m = re.match(r"x([0-9A-Fa-f]{1,2})", body[i + 1:])
            if m:
                out.append(chr(int(m.group(1), 16)))
                i += 1 + len(m.group(0))
                continue
            out.append(n)
            i += 2
            continue
        if c == "'" and i + 1 < len(body) and body[i + 1] == "'":
            out.append("'")
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _closing_quote(sql, j, quote):
    """Index of the quote that closes a literal whose text starts at j (a doubled quote
    is part of the text), or len(sql) when it is unterminated."""
    n = len(sql)
    while j < n:
        if sql[j] == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
            else:
                return j
        else:
            j += 1
    return n


def tokenize(sql):
    """Tokens of sql; an unterminated literal or comment ends the token list."""
    toks = []
    i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            depth = 1
            j = i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth += 1
                    j += 2
                elif sql.startswith("*/", j):
                    depth -= 1
                    j += 2
                else:
                    j += 1
            i = j
        elif c in "eE" and i + 1 < n and sql[i + 1] == "'":
            j = i + 2
            while j < n:
                if sql[j] == "\\":
                    j += 2
                elif sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        j += 2
                    else:
                        break
                else:
                    j += 1
            if j >= n:
                return toks
            toks.append(Token("string", sql[i:j + 1], i, j + 1, _decode_escape_string(sql[i + 2:j])))
            i = j + 1
        elif c in "'\"":
            j = _closing_quote(sql, i + 1, c)
            if j >= n:
                return toks
            kind = "string" if c == "'" else "qident"
            toks.append(Token(kind, sql[i:j + 1], i, j + 1, sql[i + 1:j].replace(c + c, c)))
            i = j + 1
        elif c == "$" and _DOLLAR_TAG.match(sql, i):
            tag = _DOLLAR_TAG.match(sql, i).group(0)
            j = sql.find(tag, i + len(tag))
            if j < 0:
                return toks
            toks.append(Token("string", sql[i:j + len(tag)], i, j + len(tag), sql[i + len(tag):j]))
            i = j + len(tag)
        elif _IDENT_START.match(c):
            j = i + 1
            while j < n and _IDENT_CHAR.match(sql[j]):
                j += 1
            toks.append(Token("word", sql[i:j], i, j, sql[i:j].lower()))
            i = j
        elif c == ";":
            toks.append(Token("semi", c, i, i + 1))
            i += 1
        else:
            toks.append(Token("other", c, i, i + 1))
            i += 1
    return toks


def statements(toks):
    """Split tokens into statements (lists of tokens), dropping empty ones."""
    out, cur = [], []
    for t in toks:
        if t.kind == "semi":
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


def _words(stmt, count):
    return [t.value if t.kind == "word" else None for t in stmt[:count]]


def rewrite_passwords(sql, hash_fn):
    """Replace each cleartext PASSWORD literal of CREATE/ALTER ROLE/USER statements by
    hash_fn(cleartext). Returns (new sql, number of literals replaced)."""
    toks = tokenize(sql)
    edits = []
    for stmt in statements(toks):
        w = _words(stmt, 2)
        if len(w) < 2 or w[0] not in ("create", "alter") or w[1] not in ("role", "user"):
            continue
        for k in range(2, len(stmt) - 1):
            t = stmt[k]
            if t.kind == "word" and t.value == "password" and stmt[k + 1].kind == "string":
                lit = stmt[k + 1]
                new = hash_fn(lit.value)
                if new is not None:
                    edits.append((lit.start, lit.end, "'" + new.replace("'", "''") + "'"))
    for start, end, text in reversed(edits):
        sql = sql[:start] + text + sql[end:]
    return sql, len(edits)


def is_discard_all(sql):
    """True when sql is exactly one DISCARD ALL statement."""
    stmts = statements(tokenize(sql))
    return len(stmts) == 1 and _words(stmts[0], 3) == ["discard", "all"] and len(stmts[0]) == 2


def refused_session_authorization(sql):
    """The first statement CockroachDB's grammar refuses among the SESSION AUTHORIZATION
    forms, as (kind, statement tokens) with kind "set_name" or "reset"; else None.

    pkg/sql/parser/sql.y set_rest_more: SET [SESSION|LOCAL] SESSION AUTHORIZATION DEFAULT
    is accepted (it resets the role); SESSION AUTHORIZATION <name> is
    unimplementedWithIssue(sqllex, 40283). reset_session_stmt has no SESSION
    AUTHORIZATION form (AUTHORIZATION is not a session_var), so RESET SESSION
    AUTHORIZATION is a syntax error.
    """
    for stmt in statements(tokenize(sql)):
        w = _words(stmt, 5)
        if not w or w[0] not in ("set", "reset"):
            continue
        k = 1
        if w[0] == "set" and len(w) > k and w[k] in ("session", "local") and len(w) > k + 2 \
                and w[k + 1] == "session" and w[k + 2] == "authorization":
            k += 1
        if w[0] == "set" and len(w) > k + 1 and w[k] == "session" and w[k + 1] == "authorization":
            rest = stmt[k + 2:]
            if len(rest) == 1 and rest[0].kind == "word" and rest[0].value == "default":
                continue
            return ("set_name", stmt)
        if w[0] == "reset" and len(w) > 2 and w[1] == "session" and w[2] == "authorization":
            return ("reset", stmt)
    return None
