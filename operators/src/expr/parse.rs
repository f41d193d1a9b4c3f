//! Text to syntax tree: a [`winnow`] tokenizer and a precedence-climbing parser over its tokens.
//!
//! Precedence, loosest first: `or`; `and`; `not`; comparisons (`= == != <> < <= > >=`, not
//! chained) and `is [not] null`; `+ -`; `* / %`; unary `-`; postfix `[index]`; then literals,
//! fields, function calls, `cast(x as type)` and parentheses. Every error carries the byte
//! offset in the expression where it was found and says what was expected there.

use winnow::Parser as _;
use winnow::ascii::{digit0, digit1};
use winnow::combinator::{alt, opt};
use winnow::token::{one_of, take_while};

use super::ExprError;

/// A literal value.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `42`
    Int(i64),
    /// `4.2`, `1e3`
    Float(f64),
    /// `'text'` (a quote inside is written twice: `'it''s'`)
    Str(String),
    /// `true`, `false`
    Bool(bool),
    /// `null`
    Null,
}

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `=` or `==`
    Eq,
    /// `!=` or `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `and`
    And,
    /// `or`
    Or,
}

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Rem => "%",
            Self::Eq => "=",
            Self::NotEq => "!=",
            Self::Lt => "<",
            Self::LtEq => "<=",
            Self::Gt => ">",
            Self::GtEq => ">=",
            Self::And => "and",
            Self::Or => "or",
        }
    }

    /// True for the six comparisons.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            Self::Eq | Self::NotEq | Self::Lt | Self::LtEq | Self::Gt | Self::GtEq
        )
    }
}

/// A syntax tree node with the byte offset where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Ast {
    /// Byte offset of the node's first character (for operators: of the operator).
    pub offset: usize,
    /// What the node is.
    pub kind: AstKind,
}

/// The kinds of syntax tree node.
#[derive(Clone, Debug, PartialEq)]
pub enum AstKind {
    /// A literal.
    Literal(Literal),
    /// A field of the input, bare (`temperature`) or quoted (`"my field"`).
    Field(String),
    /// Unary minus.
    Neg(Box<Ast>),
    /// `not x`.
    Not(Box<Ast>),
    /// `a op b`.
    Binary(BinaryOp, Box<Ast>, Box<Ast>),
    /// `x is null` (`negated`: `x is not null`).
    IsNull {
        /// The operand.
        expr: Box<Ast>,
        /// `is not null`.
        negated: bool,
    },
    /// `name(args)`.
    Call {
        /// Function name, lower-cased.
        name: String,
        /// Arguments.
        args: Vec<Ast>,
    },
    /// `cast(x as type)`; the type name as written, with its offset.
    Cast(Box<Ast>, String, usize),
    /// `x[index]`.
    Index(Box<Ast>, i64),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    Quoted(String),
    Sym(&'static str),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Int(v) => format!("number {v}"),
            Tok::Float(v) => format!("number {v}"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Quoted(s) => format!("field \"{s}\""),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::End => "the end of the expression".into(),
        }
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(self, Tok::Ident(s) if s.eq_ignore_ascii_case(word))
    }
}

const SYMBOLS: [&str; 18] = [
    "==", "!=", "<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "[", "]", ",",
];

/// Words that cannot be bare field names (quote them: `"and"`).
const KEYWORDS: [&str; 8] = ["and", "or", "not", "is", "null", "true", "false", "as"];

fn number(input: &mut &str) -> winnow::Result<Tok> {
    let text = (
        digit1,
        opt(('.', digit0)),
        opt((one_of(['e', 'E']), opt(one_of(['+', '-'])), digit1)),
    )
        .take()
        .parse_next(input)?;
    // Digits only: i64 parsing fails on overflow alone, and then the value is read as a float.
    Ok(match text.parse::<i64>() {
        Ok(v) => Tok::Int(v),
        Err(_) => Tok::Float(text.parse().unwrap_or(f64::INFINITY)),
    })
}

fn ident(input: &mut &str) -> winnow::Result<Tok> {
    (
        one_of(|c: char| c.is_alphabetic() || c == '_'),
        take_while(0.., |c: char| c.is_alphanumeric() || c == '_'),
    )
        .take()
        .map(|s: &str| Tok::Ident(s.to_string()))
        .parse_next(input)
}

fn symbol(input: &mut &str) -> winnow::Result<Tok> {
    for sym in SYMBOLS {
        if let Some(rest) = input.strip_prefix(sym) {
            *input = rest;
            return Ok(Tok::Sym(sym));
        }
    }
    Err(winnow::error::ContextError::new())
}

/// Reads a `quote`-delimited text where a doubled quote stands for one; `None` if unterminated.
fn quoted(input: &mut &str, quote: char) -> Option<String> {
    let mut out = String::new();
    let mut chars = input.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if chars.peek().map(|&(_, c)| c) == Some(quote) {
                chars.next();
                out.push(quote);
            } else {
                *input = &input[i + c.len_utf8()..];
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    let mut rest = text;
    let mut tokens = Vec::new();
    loop {
        rest = rest.trim_start();
        let offset = text.len() - rest.len();
        let Some(first) = rest.chars().next() else {
            tokens.push((offset, Tok::End));
            return Ok(tokens);
        };
        let token = match first {
            '\'' | '"' => {
                let Some(content) = quoted(&mut rest, first) else {
                    let what = if first == '\'' {
                        "string"
                    } else {
                        "quoted field name"
                    };
                    return Err(ExprError::new(
                        offset,
                        format!("unterminated {what}: expected a closing {first}"),
                    ));
                };
                if first == '\'' {
                    Tok::Str(content)
                } else {
                    Tok::Quoted(content)
                }
            }
            _ => match alt((number, ident, symbol)).parse_next(&mut rest) {
                Ok(token) => token,
                Err(_) => {
                    return Err(ExprError::new(
                        offset,
                        format!(
                            "unexpected character '{first}': expected a value, a field, a \
                             function or an operator"
                        ),
                    ));
                }
            },
        };
        tokens.push((offset, token));
    }
}

/// Parses an expression.
///
/// # Errors
/// The first syntax error, with its byte offset and what was expected there.
pub fn parse(text: &str) -> Result<Ast, ExprError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        depth: 0,
    };
    let ast = parser.or()?;
    let (offset, token) = parser.peek();
    if *token != Tok::End {
        return Err(ExprError::new(
            offset,
            format!(
                "unexpected {}: expected an operator or the end of the expression",
                token.describe()
            ),
        ));
    }
    Ok(ast)
}

/// Deeper nesting is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

struct Parser {
    tokens: Vec<(usize, Tok)>,
    position: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> (usize, &Tok) {
        let (offset, token) = &self.tokens[self.position];
        (*offset, token)
    }

    fn advance(&mut self) -> (usize, Tok) {
        let (offset, token) = self.tokens[self.position].clone();
        if token != Tok::End {
            self.position += 1;
        }
        (offset, token)
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if self.peek().1 == &Tok::Sym(leak(sym)) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        if self.peek().1.is_keyword(word) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, sym: &'static str, context: &str) -> Result<(), ExprError> {
        if self.eat_sym(sym) {
            return Ok(());
        }
        let (offset, token) = self.peek();
        Err(ExprError::new(
            offset,
            format!(
                "unexpected {}: expected '{sym}' {context}",
                token.describe()
            ),
        ))
    }

    fn binary(op: BinaryOp, offset: usize, left: Ast, right: Ast) -> Ast {
        Ast {
            offset,
            kind: AstKind::Binary(op, Box::new(left), Box::new(right)),
        }
    }

    fn or(&mut self) -> Result<Ast, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let offset = self.peek().0;
            return Err(ExprError::new(
                offset,
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        let mut left = self.and()?;
        while self.peek().1.is_keyword("or") {
            let (offset, _) = self.advance();
            let right = self.and()?;
            left = Self::binary(BinaryOp::Or, offset, left, right);
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.not()?;
        while self.peek().1.is_keyword("and") {
            let (offset, _) = self.advance();
            let right = self.not()?;
            left = Self::binary(BinaryOp::And, offset, left, right);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Ast, ExprError> {
        if self.peek().1.is_keyword("not") {
            let (offset, _) = self.advance();
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(ExprError::new(offset, "expression nested too deeply"));
            }
            let operand = self.not()?;
            self.depth -= 1;
            return Ok(Ast {
                offset,
                kind: AstKind::Not(Box::new(operand)),
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Ast, ExprError> {
        let left = self.additive()?;
        let (offset, token) = self.peek();
        if token.is_keyword("is") {
            self.advance();
            let negated = self.eat_keyword("not");
            if !self.eat_keyword("null") {
                let (offset, token) = self.peek();
                return Err(ExprError::new(
                    offset,
                    format!(
                        "unexpected {}: expected 'null' or 'not null' after 'is'",
                        token.describe()
                    ),
                ));
            }
            return Ok(Ast {
                offset,
                kind: AstKind::IsNull {
                    expr: Box::new(left),
                    negated,
                },
            });
        }
        let op = match token {
            Tok::Sym("=" | "==") => BinaryOp::Eq,
            Tok::Sym("!=" | "<>") => BinaryOp::NotEq,
            Tok::Sym("<") => BinaryOp::Lt,
            Tok::Sym("<=") => BinaryOp::LtEq,
            Tok::Sym(">") => BinaryOp::Gt,
            Tok::Sym(">=") => BinaryOp::GtEq,
            _ => return Ok(left),
        };
        self.advance();
        let right = self.additive()?;
        let (next_offset, next) = self.peek();
        if matches!(
            next,
            Tok::Sym("=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=")
        ) {
            return Err(ExprError::new(
                next_offset,
                format!(
                    "comparisons cannot be chained: expected 'and' or 'or' before {}",
                    next.describe()
                ),
            ));
        }
        Ok(Self::binary(op, offset, left, right))
    }

    fn additive(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek().1 {
                Tok::Sym("+") => BinaryOp::Add,
                Tok::Sym("-") => BinaryOp::Sub,
                _ => return Ok(left),
            };
            let (offset, _) = self.advance();
            let right = self.multiplicative()?;
            left = Self::binary(op, offset, left, right);
        }
    }

    fn multiplicative(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek().1 {
                Tok::Sym("*") => BinaryOp::Mul,
                Tok::Sym("/") => BinaryOp::Div,
                Tok::Sym("%") => BinaryOp::Rem,
                _ => return Ok(left),
            };
            let (offset, _) = self.advance();
            let right = self.unary()?;
            left = Self::binary(op, offset, left, right);
        }
    }

    fn unary(&mut self) -> Result<Ast, ExprError> {
        if self.peek().1 == &Tok::Sym("-") {
            let (offset, _) = self.advance();
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(ExprError::new(offset, "expression nested too deeply"));
            }
            let operand = self.unary()?;
            self.depth -= 1;
            // Fold `-literal` so that `-9223372036854775808` and `x > -5` stay literals.
            let kind = match operand.kind {
                AstKind::Literal(Literal::Int(v)) => AstKind::Literal(Literal::Int(-v)),
                AstKind::Literal(Literal::Float(v)) => AstKind::Literal(Literal::Float(-v)),
                _ => AstKind::Neg(Box::new(operand)),
            };
            return Ok(Ast { offset, kind });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Ast, ExprError> {
        let mut expr = self.primary()?;
        while self.peek().1 == &Tok::Sym("[") {
            let (offset, _) = self.advance();
            let negative = self.eat_sym("-");
            let index = match self.advance() {
                (_, Tok::Int(v)) => {
                    if negative {
                        -v
                    } else {
                        v
                    }
                }
                (offset, token) => {
                    return Err(ExprError::new(
                        offset,
                        format!("unexpected {}: expected an integer index", token.describe()),
                    ));
                }
            };
            self.expect_sym("]", "to close the index")?;
            expr = Ast {
                offset,
                kind: AstKind::Index(Box::new(expr), index),
            };
        }
        Ok(expr)
    }

    fn primary(&mut self) -> Result<Ast, ExprError> {
        let (offset, token) = self.advance();
        let kind = match token {
            Tok::Int(v) => AstKind::Literal(Literal::Int(v)),
            Tok::Float(v) => AstKind::Literal(Literal::Float(v)),
            Tok::Str(s) => AstKind::Literal(Literal::Str(s)),
            Tok::Quoted(name) => AstKind::Field(name),
            Tok::Sym("(") => {
                let inner = self.or()?;
                self.expect_sym(")", "to close the parenthesis")?;
                return Ok(inner);
            }
            Tok::Ident(word) => {
                let lower = word.to_ascii_lowercase();
                match lower.as_str() {
                    "true" => AstKind::Literal(Literal::Bool(true)),
                    "false" => AstKind::Literal(Literal::Bool(false)),
                    "null" => AstKind::Literal(Literal::Null),
                    _ if self.peek().1 == &Tok::Sym("(") => {
                        self.advance();
                        return if lower == "cast" {
                            self.cast(offset)
                        } else {
                            self.call(offset, lower)
                        };
                    }
                    _ if KEYWORDS.contains(&lower.as_str()) => {
                        return Err(ExprError::new(
                            offset,
                            format!(
                                "unexpected keyword '{word}': expected a value, a field or a \
                                 function (write \"{word}\" for a field of that name)"
                            ),
                        ));
                    }
                    _ => AstKind::Field(word),
                }
            }
            other => {
                return Err(ExprError::new(
                    offset,
                    format!(
                        "unexpected {}: expected a value, a field, a function or '('",
                        other.describe()
                    ),
                ));
            }
        };
        Ok(Ast { offset, kind })
    }

    fn call(&mut self, offset: usize, name: String) -> Result<Ast, ExprError> {
        let mut args = Vec::new();
        if !self.eat_sym(")") {
            loop {
                args.push(self.or()?);
                if self.eat_sym(")") {
                    break;
                }
                if !self.eat_sym(",") {
                    let (at, token) = self.peek();
                    return Err(ExprError::new(
                        at,
                        format!(
                            "unexpected {}: expected ',' or ')' in the arguments of '{name}'",
                            token.describe()
                        ),
                    ));
                }
            }
        }
        Ok(Ast {
            offset,
            kind: AstKind::Call { name, args },
        })
    }

    fn cast(&mut self, offset: usize) -> Result<Ast, ExprError> {
        let inner = self.or()?;
        if !self.eat_keyword("as") {
            let (at, token) = self.peek();
            return Err(ExprError::new(
                at,
                format!(
                    "unexpected {}: expected 'as' and a type, as in cast(x as float64)",
                    token.describe()
                ),
            ));
        }
        let (type_offset, type_name) = match self.advance() {
            (at, Tok::Ident(name)) => (at, name),
            (at, token) => {
                return Err(ExprError::new(
                    at,
                    format!(
                        "unexpected {}: expected a type name (string, float64, int64, bool, \
                         timestamp_ms)",
                        token.describe()
                    ),
                ));
            }
        };
        self.expect_sym(")", "to close cast(")?;
        Ok(Ast {
            offset,
            kind: AstKind::Cast(Box::new(inner), type_name, type_offset),
        })
    }
}

/// The `&'static str` in [`SYMBOLS`] equal to `sym` (tokens hold static symbols).
fn leak(sym: &str) -> &'static str {
    SYMBOLS.iter().find(|s| **s == sym).copied().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact rendering: fully parenthesised, to check precedence.
    fn show(ast: &Ast) -> String {
        match &ast.kind {
            AstKind::Literal(Literal::Int(v)) => v.to_string(),
            AstKind::Literal(Literal::Float(v)) => format!("{v:?}"),
            AstKind::Literal(Literal::Str(s)) => format!("'{s}'"),
            AstKind::Literal(Literal::Bool(b)) => b.to_string(),
            AstKind::Literal(Literal::Null) => "null".into(),
            AstKind::Field(name) => name.clone(),
            AstKind::Neg(e) => format!("(-{})", show(e)),
            AstKind::Not(e) => format!("(not {})", show(e)),
            AstKind::Binary(op, l, r) => format!("({} {} {})", show(l), op.symbol(), show(r)),
            AstKind::IsNull { expr, negated } => format!(
                "({} is {}null)",
                show(expr),
                if *negated { "not " } else { "" }
            ),
            AstKind::Call { name, args } => format!(
                "{name}({})",
                args.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            AstKind::Cast(e, t, _) => format!("cast({} as {t})", show(e)),
            AstKind::Index(e, i) => format!("{}[{i}]", show(e)),
        }
    }

    fn p(text: &str) -> String {
        show(&parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}")))
    }

    fn err(text: &str) -> ExprError {
        parse(text).unwrap_err()
    }

    #[test]
    fn precedence() {
        assert_eq!(p("1 + 2 * 3"), "(1 + (2 * 3))");
        assert_eq!(p("1 - 2 - 3"), "((1 - 2) - 3)");
        assert_eq!(
            p("temperature - (100 - humidity) / 5"),
            "(temperature - ((100 - humidity) / 5))"
        );
        assert_eq!(
            p("a > 0 and b != 'test' or not c"),
            "(((a > 0) and (b != 'test')) or (not c))"
        );
        assert_eq!(p("not a = 1"), "(not (a = 1))");
        assert_eq!(p("a or b and c"), "(a or (b and c))");
        assert_eq!(p("-a * 2"), "((-a) * 2)");
        assert_eq!(p("x > -5"), "(x > -5)");
        assert_eq!(p("a + 1 is not null"), "((a + 1) is not null)");
        assert_eq!(p("a IS NULL AND b"), "((a is null) and b)");
        assert_eq!(p("a % 3 <> 1"), "((a % 3) != 1)");
        assert_eq!(p("a == 1"), "(a = 1)");
    }

    #[test]
    fn literals_fields_calls_and_index() {
        assert_eq!(p("1.5e3"), "1500.0");
        assert_eq!(p("'it''s'"), "'it's'");
        assert_eq!(p("\"my field\" + 1"), "(my field + 1)");
        assert_eq!(p("TRUE or Null"), "(true or null)");
        assert_eq!(p("split(topic, '/')[1]"), "split(topic, '/')[1]");
        assert_eq!(p("split(topic, '/')[-1]"), "split(topic, '/')[-1]");
        assert_eq!(p("coalesce()"), "coalesce()");
        assert_eq!(p("Lower(x)"), "lower(x)");
        assert_eq!(p("cast(x + 1 as Float64)"), "cast((x + 1) as Float64)");
        assert_eq!(p("9223372036854775808"), "9.223372036854776e18");
        assert_eq!(p("-9223372036854775807"), "-9223372036854775807");
    }

    #[test]
    fn errors_carry_offsets_and_expectations() {
        let e = err("temperature > ");
        assert_eq!(e.offset, 14);
        assert!(e.message.contains("expected a value"), "{}", e.message);

        let e = err("a > 1 b");
        assert_eq!(e.offset, 6);
        assert!(e.message.contains("expected an operator"), "{}", e.message);

        let e = err("(a + 1");
        assert_eq!(e.offset, 6);
        assert!(e.message.contains("expected ')'"), "{}", e.message);

        let e = err("name = 'abc");
        assert_eq!(e.offset, 7);
        assert!(e.message.contains("unterminated string"), "{}", e.message);

        let e = err("a # b");
        assert_eq!(e.offset, 2);

        let e = err("a < b < c");
        assert_eq!(e.offset, 6);
        assert!(e.message.contains("chained"), "{}", e.message);

        let e = err("a is 3");
        assert_eq!(e.offset, 5);

        let e = err("cast(a float64)");
        assert_eq!(e.offset, 7);
        assert!(e.message.contains("'as'"), "{}", e.message);

        let e = err("f(a b)");
        assert_eq!(e.offset, 4);
        assert!(e.message.contains("',' or ')'"), "{}", e.message);

        let e = err("x[a]");
        assert_eq!(e.offset, 2);

        let e = err("and > 1");
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("keyword"), "{}", e.message);

        assert_eq!(err("").offset, 0);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let text = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(err(&text).message.contains("nested too deeply"));
        let text = format!("{}1", "-".repeat(5000));
        assert!(err(&text).message.contains("nested too deeply"));
        let text = format!("{}a", "not ".repeat(5000));
        assert!(err(&text).message.contains("nested too deeply"));
    }

    proptest::proptest! {
        #[test]
        fn random_text_never_panics(text in "\\PC{0,40}") {
            let _ = parse(&text);
        }

        #[test]
        fn random_expression_like_text_never_panics(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "a", "1", "2.5", "'s'", "\"f\"", "(", ")", "[", "]", "-", "+", "*", "/", "%",
                "and", "or", "not", "is", "null", "=", "<", ">=", "<>", ",", "cast", "as",
                "split", "1e", "'", "\"", " ",
            ]), 0..30)
        ) {
            let _ = parse(&parts.join(" "));
            let _ = parse(&parts.concat());
        }
    }
}
