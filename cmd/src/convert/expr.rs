//! Argo Rollouts' analysis conditions are [expr](https://expr-lang.org) expressions;
//! sluice's are CEL. This parses the subset of expr that Argo's documentation and users
//! write (comparisons, `and`/`or`/`not`, arithmetic, indexing, `len`, `isNaN`, `all` /
//! `any` / `none` / `one` / `filter` / `map` with `#` predicates, ternaries) into a
//! small tree and prints it as CEL. Anything outside that subset is refused with the
//! reason, never guessed at: a condition is a gate, and a wrong translation would pass
//! or fail rollouts silently.

use std::fmt;

/// Why an expression could not be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable(pub String);

impl fmt::Display for Untranslatable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A translated condition, and what a reader should know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub cel: String,
    /// Differences of meaning worth a warning (bare `result` indexed, NaN handling).
    pub notes: Vec<String>,
}

/// What `result` is in the metric the condition belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultShape {
    /// Prometheus: sluice binds a list of doubles (a scalar is a list of one), where Argo
    /// binds a list for a vector and a number for a scalar.
    Numbers,
    /// Web: the JSON value, the same in both.
    Json,
}

/// Translates one Argo condition into CEL.
pub fn translate(expr: &str, shape: ResultShape) -> Result<Translation, Untranslatable> {
    let tokens = lex(expr)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        closure_depth: 0,
    };
    let tree = parser.expression(0)?;
    if parser.pos != parser.tokens.len() {
        return Err(Untranslatable(format!(
            "unexpected {} after a complete expression",
            parser.tokens[parser.pos]
        )));
    }
    let mut notes = Vec::new();
    let tree = adapt(tree, shape, false, &mut notes);
    let mut cel = String::new();
    print(&tree, &mut cel);
    notes.dedup();
    Ok(Translation { cel, notes })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(String),
    Str(String),
    Ident(String),
    /// `#`, the element in a predicate.
    Hash,
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Dot,
    Question,
    Colon,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Number(n) => write!(f, "number {n}"),
            Token::Str(s) => write!(f, "string {s:?}"),
            Token::Ident(i) => write!(f, "{i:?}"),
            Token::Hash => f.write_str("\"#\""),
            Token::Op(o) => write!(f, "{o:?}"),
            Token::LParen => f.write_str("\"(\""),
            Token::RParen => f.write_str("\")\""),
            Token::LBracket => f.write_str("\"[\""),
            Token::RBracket => f.write_str("\"]\""),
            Token::LBrace => f.write_str("\"{\""),
            Token::RBrace => f.write_str("\"}\""),
            Token::Comma => f.write_str("\",\""),
            Token::Dot => f.write_str("\".\""),
            Token::Question => f.write_str("\"?\""),
            Token::Colon => f.write_str("\":\""),
        }
    }
}

/// Operators of expr, longest first so that `>=` is not read as `>` then `=`.
const OPERATORS: &[&str] = &[
    "**", "==", "!=", "<=", ">=", "&&", "||", "??", "?.", "..", "<", ">", "+", "-", "*", "/", "%",
    "!",
];

fn lex(text: &str) -> Result<Vec<Token>, Untranslatable> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '_') {
                i += 1;
            }
            // A fraction, but not the range operator `1..3`.
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let number: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            out.push(Token::Number(number));
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == '"' || c == '\'' {
            let quote = c;
            let mut value = String::new();
            i += 1;
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err(Untranslatable("a string is not closed".into()));
                };
                i += 1;
                if ch == quote {
                    break;
                }
                if ch == '\\' {
                    let Some(&escaped) = chars.get(i) else {
                        return Err(Untranslatable("a string is not closed".into()));
                    };
                    i += 1;
                    value.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '\\' | '"' | '\'' => escaped,
                        other => {
                            return Err(Untranslatable(format!(
                                "the string escape \\{other} is not translated"
                            )));
                        }
                    });
                    continue;
                }
                value.push(ch);
            }
            out.push(Token::Str(value));
            continue;
        }
        if c == '`' {
            return Err(Untranslatable("raw `strings` are not translated".into()));
        }
        let single = match c {
            '(' => Some(Token::LParen),
            ')' => Some(Token::RParen),
            '[' => Some(Token::LBracket),
            ']' => Some(Token::RBracket),
            '{' => Some(Token::LBrace),
            '}' => Some(Token::RBrace),
            ',' => Some(Token::Comma),
            '#' => Some(Token::Hash),
            ':' => Some(Token::Colon),
            _ => None,
        };
        if let Some(t) = single {
            out.push(t);
            i += 1;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        if let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Token::Op(op));
            i += op.chars().count();
            continue;
        }
        match c {
            '.' => out.push(Token::Dot),
            '?' => out.push(Token::Question),
            other => return Err(Untranslatable(format!("unexpected character {other:?}"))),
        }
        i += 1;
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Int(String),
    Float(String),
    Str(String),
    Bool(bool),
    Null,
    /// `result`.
    Result,
    /// The element of a predicate (`#` in expr, a named variable in CEL).
    Element(usize),
    List(Vec<Node>),
    Not(Box<Node>),
    Neg(Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    Ternary(Box<Node>, Box<Node>, Box<Node>),
    Index(Box<Node>, Box<Node>),
    Member(Box<Node>, String),
    /// `size(x)`.
    Size(Box<Node>),
    /// `x != x`: true exactly for NaN.
    IsNan(Box<Node>),
    /// A macro over a list with its element variable: `all`, `exists`, `exists_one`,
    /// `filter`, `map`; `none` is `!exists`.
    Macro(&'static str, Box<Node>, usize, Box<Node>),
    /// A method call on a string: `contains`, `startsWith`, `endsWith`, `matches`.
    Method(Box<Node>, &'static str, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    /// Binding strength, the same order in expr and in CEL.
    fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::In => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Rem => 5,
        }
    }

    fn cel(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }

    fn arithmetic(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem
        )
    }
}

/// An infix operator at the parser's position: a binary one, a string method written
/// infix in expr (`a contains "x"`), or one that has no CEL translation.
enum Infix {
    Bin(BinOp),
    Method(&'static str),
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// How many predicates (`{...}`) enclose the position: `#` means the innermost.
    closure_depth: usize,
}

const COMPARISON_PRECEDENCE: u8 = 3;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Result<Token, Untranslatable> {
        let t = self
            .tokens
            .get(self.pos)
            .cloned()
            .ok_or_else(|| Untranslatable("the expression ends too early".into()))?;
        self.pos += 1;
        Ok(t)
    }

    fn expect(&mut self, want: Token) -> Result<(), Untranslatable> {
        let got = self.next()?;
        if got == want {
            Ok(())
        } else {
            Err(Untranslatable(format!("expected {want}, found {got}")))
        }
    }

    fn infix(&self) -> Result<Option<(Infix, u8)>, Untranslatable> {
        let Some(t) = self.peek() else {
            return Ok(None);
        };
        let bin = |op: BinOp| Ok(Some((Infix::Bin(op), op.precedence())));
        match t {
            Token::Op("||") => bin(BinOp::Or),
            Token::Op("&&") => bin(BinOp::And),
            Token::Op("==") => bin(BinOp::Eq),
            Token::Op("!=") => bin(BinOp::Ne),
            Token::Op("<") => bin(BinOp::Lt),
            Token::Op("<=") => bin(BinOp::Le),
            Token::Op(">") => bin(BinOp::Gt),
            Token::Op(">=") => bin(BinOp::Ge),
            Token::Op("+") => bin(BinOp::Add),
            Token::Op("-") => bin(BinOp::Sub),
            Token::Op("*") => bin(BinOp::Mul),
            Token::Op("/") => bin(BinOp::Div),
            Token::Op("%") => bin(BinOp::Rem),
            Token::Ident(w) => match w.as_str() {
                "or" => bin(BinOp::Or),
                "and" => bin(BinOp::And),
                "in" => bin(BinOp::In),
                "contains" => Ok(Some((Infix::Method("contains"), COMPARISON_PRECEDENCE))),
                "startsWith" => Ok(Some((Infix::Method("startsWith"), COMPARISON_PRECEDENCE))),
                "endsWith" => Ok(Some((Infix::Method("endsWith"), COMPARISON_PRECEDENCE))),
                "matches" => Ok(Some((Infix::Method("matches"), COMPARISON_PRECEDENCE))),
                "not" => Err(Untranslatable(
                    "`not in` / `not matches` are not translated".into(),
                )),
                _ => Ok(None),
            },
            Token::Op(op @ ("**" | ".." | "??" | "?.")) => Err(Untranslatable(format!(
                "the operator {op} has no CEL translation"
            ))),
            _ => Ok(None),
        }
    }

    /// Precedence climbing: binary operators binding tighter than `min`.
    fn expression(&mut self, min: u8) -> Result<Node, Untranslatable> {
        let mut left = self.unary()?;
        while let Some((op, prec)) = self.infix()? {
            if prec <= min {
                break;
            }
            self.pos += 1;
            let right = self.expression(prec)?;
            left = match op {
                Infix::Bin(op) => Node::Binary(op, Box::new(left), Box::new(right)),
                Infix::Method(name) => Node::Method(Box::new(left), name, Box::new(right)),
            };
        }
        if min == 0 && self.peek() == Some(&Token::Question) {
            self.pos += 1;
            let yes = self.expression(0)?;
            self.expect(Token::Colon)?;
            let no = self.expression(0)?;
            left = Node::Ternary(Box::new(left), Box::new(yes), Box::new(no));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, Untranslatable> {
        match self.peek() {
            Some(Token::Op("!")) => {
                self.pos += 1;
                Ok(Node::Not(Box::new(self.unary()?)))
            }
            Some(Token::Ident(w)) if w == "not" => {
                self.pos += 1;
                Ok(Node::Not(Box::new(self.unary()?)))
            }
            Some(Token::Op("-")) => {
                self.pos += 1;
                Ok(Node::Neg(Box::new(self.unary()?)))
            }
            Some(Token::Op("+")) => {
                self.pos += 1;
                self.unary()
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Node, Untranslatable> {
        let mut node = self.primary()?;
        loop {
            match self.peek() {
                Some(Token::LBracket) => {
                    self.pos += 1;
                    let index = self.expression(0)?;
                    if self.peek() == Some(&Token::Colon) {
                        return Err(Untranslatable("slices (a[1:2]) are not translated".into()));
                    }
                    self.expect(Token::RBracket)?;
                    node = Node::Index(Box::new(node), Box::new(index));
                }
                Some(Token::Dot) => {
                    self.pos += 1;
                    match self.next()? {
                        Token::Ident(name) => {
                            if self.peek() == Some(&Token::LParen) {
                                return Err(Untranslatable(format!(
                                    "the method call .{name}() is not translated"
                                )));
                            }
                            node = Node::Member(Box::new(node), name);
                        }
                        other => {
                            return Err(Untranslatable(format!(
                                "expected a field name after \".\", found {other}"
                            )));
                        }
                    }
                }
                _ => return Ok(node),
            }
        }
    }

    fn primary(&mut self) -> Result<Node, Untranslatable> {
        match self.next()? {
            Token::Number(n) => {
                if n.contains(['.', 'e', 'E']) {
                    Ok(Node::Float(n))
                } else {
                    Ok(Node::Int(n))
                }
            }
            Token::Str(s) => Ok(Node::Str(s)),
            Token::Hash => {
                if self.closure_depth == 0 {
                    return Err(Untranslatable("# outside a predicate".into()));
                }
                Ok(Node::Element(self.closure_depth))
            }
            Token::LParen => {
                let inner = self.expression(0)?;
                self.expect(Token::RParen)?;
                Ok(inner)
            }
            Token::LBracket => {
                let mut items = Vec::new();
                if self.peek() == Some(&Token::RBracket) {
                    self.pos += 1;
                    return Ok(Node::List(items));
                }
                loop {
                    items.push(self.expression(0)?);
                    match self.next()? {
                        Token::Comma => continue,
                        Token::RBracket => break,
                        other => {
                            return Err(Untranslatable(format!(
                                "expected \",\" or \"]\", found {other}"
                            )));
                        }
                    }
                }
                Ok(Node::List(items))
            }
            Token::Ident(name) => {
                if self.peek() == Some(&Token::LParen) {
                    self.pos += 1;
                    return self.call(&name);
                }
                match name.as_str() {
                    "result" => Ok(Node::Result),
                    "true" => Ok(Node::Bool(true)),
                    "false" => Ok(Node::Bool(false)),
                    "nil" => Ok(Node::Null),
                    other => Err(Untranslatable(format!(
                        "unknown name {other:?}: an Argo condition sees only `result`"
                    ))),
                }
            }
            other => Err(Untranslatable(format!("unexpected {other}"))),
        }
    }

    /// A function call; the opening parenthesis is consumed.
    fn call(&mut self, name: &str) -> Result<Node, Untranslatable> {
        let macro_name = match name {
            "all" => Some("all"),
            "any" => Some("exists"),
            "none" => Some("none"),
            "one" => Some("exists_one"),
            "filter" => Some("filter"),
            "map" => Some("map"),
            _ => None,
        };
        if let Some(mac) = macro_name {
            let list = self.expression(0)?;
            self.expect(Token::Comma)?;
            // `{# > 1}`, or (newer expr) the predicate without braces.
            let braced = self.peek() == Some(&Token::LBrace);
            if braced {
                self.pos += 1;
            }
            self.closure_depth += 1;
            let depth = self.closure_depth;
            let body = self.expression(0)?;
            self.closure_depth -= 1;
            if braced {
                self.expect(Token::RBrace)?;
            }
            self.expect(Token::RParen)?;
            return Ok(Node::Macro(mac, Box::new(list), depth, Box::new(body)));
        }
        let mut args = Vec::new();
        if self.peek() == Some(&Token::RParen) {
            self.pos += 1;
        } else {
            loop {
                args.push(self.expression(0)?);
                match self.next()? {
                    Token::Comma => continue,
                    Token::RParen => break,
                    other => {
                        return Err(Untranslatable(format!(
                            "expected \",\" or \")\", found {other}"
                        )));
                    }
                }
            }
        }
        match (name, args.len()) {
            ("len", 1) => Ok(Node::Size(Box::new(args.remove(0)))),
            ("isNaN", 1) => Ok(Node::IsNan(Box::new(args.remove(0)))),
            ("default", _) => Err(Untranslatable(
                "default() has no CEL translation; sluice never passes an empty result, write \
                 the default into the query instead (`... or vector(0)`)"
                    .into(),
            )),
            (f, _) => Err(Untranslatable(format!(
                "the function {f}() has no CEL translation here"
            ))),
        }
    }
}

/// Rewrites what differs between Argo's `result` and sluice's and between expr's and CEL's
/// numbers: a bare Prometheus `result` (a number in Argo, for a scalar) becomes
/// `result[0]`; an integer literal in arithmetic with a double becomes a double (CEL does
/// not add an int to a double).
fn adapt(node: Node, shape: ResultShape, indexed: bool, notes: &mut Vec<String>) -> Node {
    match node {
        Node::Result if shape == ResultShape::Numbers && !indexed => {
            notes.push(
                "a bare `result` (a scalar query's number in Argo) is `result[0]` in sluice, \
                 where a Prometheus result is always a list"
                    .into(),
            );
            Node::Index(Box::new(Node::Result), Box::new(Node::Int("0".into())))
        }
        Node::Index(list, index) => Node::Index(
            Box::new(adapt(*list, shape, true, notes)),
            Box::new(adapt(*index, shape, false, notes)),
        ),
        Node::Size(inner) => {
            notes.push(
                "sluice never passes an empty result (it is Inconclusive whatever the \
                 condition), so a len(result) == 0 test no longer passes on no data"
                    .into(),
            );
            Node::Size(Box::new(adapt(*inner, shape, true, notes)))
        }
        Node::IsNan(inner) => {
            notes.push(
                "sluice never passes a NaN result (it is Inconclusive whatever the \
                 condition); isNaN(x) is written x != x"
                    .into(),
            );
            Node::IsNan(Box::new(adapt(*inner, shape, false, notes)))
        }
        Node::Macro(name, list, depth, body) => Node::Macro(
            name,
            Box::new(adapt(*list, shape, true, notes)),
            depth,
            Box::new(adapt(*body, shape, false, notes)),
        ),
        Node::Member(inner, field) => {
            Node::Member(Box::new(adapt(*inner, shape, true, notes)), field)
        }
        Node::Binary(op, l, r) => {
            let (l, r) = (
                adapt(*l, shape, false, notes),
                adapt(*r, shape, false, notes),
            );
            if op.arithmetic() {
                let float = |n: Node, other: &Node| match n {
                    Node::Int(i) if !is_int(other) => Node::Float(format!("{i}.0")),
                    n => n,
                };
                let l2 = float(l.clone(), &r);
                let r2 = float(r, &l);
                Node::Binary(op, Box::new(l2), Box::new(r2))
            } else {
                Node::Binary(op, Box::new(l), Box::new(r))
            }
        }
        Node::Not(inner) => Node::Not(Box::new(adapt(*inner, shape, false, notes))),
        Node::Neg(inner) => Node::Neg(Box::new(adapt(*inner, shape, false, notes))),
        Node::Ternary(c, y, n) => Node::Ternary(
            Box::new(adapt(*c, shape, false, notes)),
            Box::new(adapt(*y, shape, false, notes)),
            Box::new(adapt(*n, shape, false, notes)),
        ),
        Node::List(items) => Node::List(
            items
                .into_iter()
                .map(|i| adapt(i, shape, false, notes))
                .collect(),
        ),
        Node::Method(recv, name, arg) => Node::Method(
            Box::new(adapt(*recv, shape, false, notes)),
            name,
            Box::new(adapt(*arg, shape, false, notes)),
        ),
        other => other,
    }
}

/// An expression whose CEL type is int: a literal or a size.
fn is_int(node: &Node) -> bool {
    match node {
        Node::Int(_) | Node::Size(_) => true,
        Node::Neg(inner) => is_int(inner),
        Node::Binary(op, l, r) if op.arithmetic() => is_int(l) && is_int(r),
        _ => false,
    }
}

fn element_name(depth: usize) -> String {
    if depth == 1 {
        "x".into()
    } else {
        format!("x{depth}")
    }
}

/// Whether `node` must be parenthesised as an operand of an operator of precedence
/// `parent` (`right`: it is the right operand; operators are left-associative).
fn needs_parens(node: &Node, parent: u8, right: bool) -> bool {
    match node {
        Node::Binary(op, ..) => {
            let p = op.precedence();
            p < parent || (right && p == parent)
        }
        Node::Method(..) => COMPARISON_PRECEDENCE < parent || right,
        Node::Ternary(..) | Node::IsNan(..) => true,
        _ => false,
    }
}

fn print_operand(node: &Node, parent: u8, right: bool, out: &mut String) {
    if needs_parens(node, parent, right) {
        out.push('(');
        print(node, out);
        out.push(')');
    } else {
        print(node, out);
    }
}

/// An operand of a unary operator or of member access: anything compound in parentheses.
fn print_tight(node: &Node, out: &mut String) {
    let simple = matches!(
        node,
        Node::Int(_)
            | Node::Float(_)
            | Node::Str(_)
            | Node::Bool(_)
            | Node::Null
            | Node::Result
            | Node::Element(_)
            | Node::List(_)
            | Node::Index(..)
            | Node::Member(..)
            | Node::Size(_)
            | Node::Macro(..)
    );
    if simple {
        print(node, out);
    } else {
        out.push('(');
        print(node, out);
        out.push(')');
    }
}

fn print(node: &Node, out: &mut String) {
    match node {
        Node::Int(i) => out.push_str(i),
        Node::Float(f) => out.push_str(f),
        Node::Str(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Null => out.push_str("null"),
        Node::Result => out.push_str("result"),
        Node::Element(depth) => out.push_str(&element_name(*depth)),
        Node::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print(item, out);
            }
            out.push(']');
        }
        Node::Not(inner) => {
            out.push('!');
            print_tight(inner, out);
        }
        Node::Neg(inner) => {
            out.push('-');
            print_tight(inner, out);
        }
        Node::Binary(op, l, r) => {
            let p = op.precedence();
            print_operand(l, p, false, out);
            out.push(' ');
            out.push_str(op.cel());
            out.push(' ');
            print_operand(r, p, true, out);
        }
        Node::Ternary(c, y, n) => {
            print_operand(c, 1, false, out);
            out.push_str(" ? ");
            print_operand(y, 1, false, out);
            out.push_str(" : ");
            print_operand(n, 1, false, out);
        }
        Node::Index(list, index) => {
            print_tight(list, out);
            out.push('[');
            print(index, out);
            out.push(']');
        }
        Node::Member(inner, field) => {
            print_tight(inner, out);
            out.push('.');
            out.push_str(field);
        }
        Node::Size(inner) => {
            out.push_str("size(");
            print(inner, out);
            out.push(')');
        }
        Node::IsNan(inner) => {
            print_tight(inner, out);
            out.push_str(" != ");
            print_tight(inner, out);
        }
        Node::Macro(name, list, depth, body) => {
            let var = element_name(*depth);
            let (negate, name) = match *name {
                "none" => (true, "exists"),
                other => (false, other),
            };
            if negate {
                out.push('!');
            }
            print_tight(list, out);
            out.push('.');
            out.push_str(name);
            out.push('(');
            out.push_str(&var);
            out.push_str(", ");
            print(body, out);
            out.push(')');
        }
        Node::Method(recv, name, arg) => {
            print_tight(recv, out);
            out.push('.');
            out.push_str(name);
            out.push('(');
            print(arg, out);
            out.push(')');
        }
    }
}
