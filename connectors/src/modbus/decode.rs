//! Register words and coil bits → column values: the value types, the word orders of 32-bit
//! values, and `scale` / `offset`.
//!
//! A Modbus register is a 16-bit word sent high byte first. Values wider than one register
//! span two, and devices disagree on their order. With `A` the most significant byte of a
//! 32-bit value and `D` the least, the two registers read at `address` and `address + 1`
//! hold:
//!
//! | `word_order`         | registers `[addr, addr+1]` | seen on                              |
//! |----------------------|----------------------------|--------------------------------------|
//! | `big` (`abcd`)       | `AB CD`                    | Modbus spec order, Siemens, Schneider |
//! | `little` (`cdab`)    | `CD AB`                    | many Modicon-style PLCs, meters       |
//! | `big_swap` (`badc`)  | `BA DC`                    | byte-swapped devices                  |
//! | `little_swap` (`dcba`) | `DC BA`                  | fully little-endian devices           |
//!
//! A number is then `raw × scale + offset` (Float64) when `scale` or `offset` is given;
//! otherwise integers stay Int64 and `f32` becomes Float64. A non-finite `f32` (NaN, ±∞,
//! often a sensor-fault marker) becomes a null.

use edgeflow_engine::arrow::datatypes::DataType;
use serde::Deserialize;

/// The `type` of a register entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// One register, unsigned (0 to 65535).
    U16,
    /// One register, two's complement (−32768 to 32767).
    I16,
    /// Two registers, unsigned.
    U32,
    /// Two registers, two's complement.
    I32,
    /// Two registers, IEEE 754 single precision.
    F32,
    /// A coil or discrete input; on a register, the register is non-zero (or its `bit` is set).
    Bool,
}

impl ValueType {
    /// The name as written in a query file.
    pub fn name(self) -> &'static str {
        match self {
            Self::U16 => "u16",
            Self::I16 => "i16",
            Self::U32 => "u32",
            Self::I32 => "i32",
            Self::F32 => "f32",
            Self::Bool => "bool",
        }
    }

    /// Registers one value occupies.
    pub fn registers(self) -> u16 {
        match self {
            Self::U32 | Self::I32 | Self::F32 => 2,
            Self::U16 | Self::I16 | Self::Bool => 1,
        }
    }
}

/// The `word_order` of a 32-bit value (see the module docs for the byte layouts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// `AB CD`: high word first (the Modbus convention). The default.
    #[default]
    #[serde(alias = "abcd")]
    Big,
    /// `CD AB`: low word first.
    #[serde(alias = "cdab")]
    Little,
    /// `BA DC`: high word first, bytes swapped within each word.
    #[serde(alias = "badc")]
    BigSwap,
    /// `DC BA`: low word first, bytes swapped within each word.
    #[serde(alias = "dcba")]
    LittleSwap,
}

impl WordOrder {
    /// The 32 bits of two registers read in address order.
    pub fn combine(self, first: u16, second: u16) -> u32 {
        let (high, low) = match self {
            Self::Big => (first, second),
            Self::Little => (second, first),
            Self::BigSwap => (first.swap_bytes(), second.swap_bytes()),
            Self::LittleSwap => (second.swap_bytes(), first.swap_bytes()),
        };
        (u32::from(high) << 16) | u32::from(low)
    }
}

/// One decoded value of a poll.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    /// A scaled number or an `f32`.
    Float(f64),
    /// An integer without scale or offset.
    Int(i64),
    /// A coil, discrete input or `bool` register.
    Bool(bool),
    /// No value (a non-finite `f32`).
    Null,
}

/// How one field turns its registers or bit into a [`Reading`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decoder {
    /// The value type.
    pub value_type: ValueType,
    /// Word order of 32-bit types.
    pub word_order: WordOrder,
    /// For `bool` on a register: the bit (0 = least significant); `None` means non-zero.
    pub bit: Option<u8>,
    /// Multiplier, if given.
    pub scale: Option<f64>,
    /// Added after the multiplier, if given.
    pub offset: Option<f64>,
}

impl Decoder {
    /// A decoder of `value_type` with the defaults (big word order, no bit, no scaling).
    pub fn new(value_type: ValueType) -> Self {
        Self {
            value_type,
            word_order: WordOrder::Big,
            bit: None,
            scale: None,
            offset: None,
        }
    }

    /// True when values are scaled into Float64.
    fn scaled(&self) -> bool {
        self.scale.is_some() || self.offset.is_some()
    }

    /// The Arrow type of the column.
    pub fn data_type(&self) -> DataType {
        match self.value_type {
            ValueType::Bool => DataType::Boolean,
            ValueType::F32 => DataType::Float64,
            _ if self.scaled() => DataType::Float64,
            _ => DataType::Int64,
        }
    }

    /// Decodes the value from `words` (exactly [`ValueType::registers`] of them).
    pub fn from_words(&self, words: &[u16]) -> Reading {
        let raw = match (self.value_type, words) {
            (ValueType::U16, [w, ..]) => i64::from(*w),
            (ValueType::I16, [w, ..]) => i64::from(*w as i16),
            (ValueType::U32, [a, b, ..]) => i64::from(self.word_order.combine(*a, *b)),
            (ValueType::I32, [a, b, ..]) => i64::from(self.word_order.combine(*a, *b) as i32),
            (ValueType::F32, [a, b, ..]) => {
                let value = f64::from(f32::from_bits(self.word_order.combine(*a, *b)));
                if !value.is_finite() {
                    return Reading::Null;
                }
                return Reading::Float(self.apply(value));
            }
            (ValueType::Bool, [w, ..]) => {
                return Reading::Bool(match self.bit {
                    Some(bit) => (w >> bit) & 1 == 1,
                    None => *w != 0,
                });
            }
            // The caller hands over the registers the type needs; fewer is a bug upstream,
            // reported as a missing value rather than a panic.
            _ => return Reading::Null,
        };
        if self.scaled() {
            Reading::Float(self.apply(raw as f64))
        } else {
            Reading::Int(raw)
        }
    }

    /// The value of a coil or discrete input.
    pub fn from_bit(&self, bit: bool) -> Reading {
        Reading::Bool(bit)
    }

    fn apply(&self, value: f64) -> f64 {
        value * self.scale.unwrap_or(1.0) + self.offset.unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registers of `bits` in each word order, written out by hand from the byte layout.
    fn layouts(bits: u32) -> [(WordOrder, [u16; 2]); 4] {
        let [a, b, c, d] = bits.to_be_bytes();
        let word = |hi: u8, lo: u8| u16::from_be_bytes([hi, lo]);
        [
            (WordOrder::Big, [word(a, b), word(c, d)]),
            (WordOrder::Little, [word(c, d), word(a, b)]),
            (WordOrder::BigSwap, [word(b, a), word(d, c)]),
            (WordOrder::LittleSwap, [word(d, c), word(b, a)]),
        ]
    }

    fn with_order(value_type: ValueType, word_order: WordOrder) -> Decoder {
        Decoder {
            word_order,
            ..Decoder::new(value_type)
        }
    }

    #[test]
    fn sixteen_bit_types() {
        let u16d = Decoder::new(ValueType::U16);
        let i16d = Decoder::new(ValueType::I16);
        assert_eq!(u16d.from_words(&[0xFFFE]), Reading::Int(65534));
        assert_eq!(i16d.from_words(&[0xFFFE]), Reading::Int(-2));
        assert_eq!(i16d.from_words(&[0x8000]), Reading::Int(-32768));
        assert_eq!(i16d.from_words(&[0x7FFF]), Reading::Int(32767));
        assert_eq!(u16d.data_type(), DataType::Int64);
    }

    #[test]
    fn f32_in_every_word_order() {
        let bits = 21.5f32.to_bits();
        assert_eq!(bits, 0x41AC_0000);
        for (order, words) in layouts(bits) {
            let decoder = with_order(ValueType::F32, order);
            assert_eq!(
                decoder.from_words(&words),
                Reading::Float(21.5),
                "{order:?}"
            );
        }
        // The same registers read in the wrong order give a different number.
        let [(_, big), (_, little), ..] = layouts(bits);
        assert_eq!(big, [0x41AC, 0x0000]);
        assert_eq!(little, [0x0000, 0x41AC]);
        let wrong = with_order(ValueType::F32, WordOrder::Big).from_words(&little);
        assert_ne!(wrong, Reading::Float(21.5));
        assert_eq!(
            with_order(ValueType::F32, WordOrder::Big).data_type(),
            DataType::Float64
        );
    }

    #[test]
    fn u32_and_i32_in_every_word_order() {
        for (order, words) in layouts(0x1234_5678) {
            let decoder = with_order(ValueType::U32, order);
            assert_eq!(
                decoder.from_words(&words),
                Reading::Int(0x1234_5678),
                "{order:?}"
            );
        }
        for (order, words) in layouts((-123_456_789i32) as u32) {
            let decoder = with_order(ValueType::I32, order);
            assert_eq!(
                decoder.from_words(&words),
                Reading::Int(-123_456_789),
                "{order:?}"
            );
        }
        let max = with_order(ValueType::U32, WordOrder::Big).from_words(&[0xFFFF, 0xFFFF]);
        assert_eq!(max, Reading::Int(4_294_967_295));
    }

    #[test]
    fn scale_and_offset_give_floats() {
        let decoder = Decoder {
            scale: Some(0.1),
            offset: Some(-40.0),
            ..Decoder::new(ValueType::I16)
        };
        assert_eq!(decoder.data_type(), DataType::Float64);
        let Reading::Float(value) = decoder.from_words(&[(-15i16) as u16]) else {
            panic!("a float");
        };
        assert!((value - (-41.5)).abs() < 1e-9, "{value}");
        let offset_only = Decoder {
            offset: Some(2.0),
            ..Decoder::new(ValueType::U16)
        };
        assert_eq!(offset_only.from_words(&[5]), Reading::Float(7.0));
        let scaled_f32 = Decoder {
            scale: Some(2.0),
            ..Decoder::new(ValueType::F32)
        };
        assert_eq!(
            scaled_f32.from_words(&[0x41AC, 0x0000]),
            Reading::Float(43.0)
        );
    }

    #[test]
    fn non_finite_f32_is_null() {
        let decoder = Decoder::new(ValueType::F32);
        let nan = f32::NAN.to_bits();
        let inf = f32::INFINITY.to_bits();
        for bits in [nan, inf] {
            let words = [(bits >> 16) as u16, bits as u16];
            assert_eq!(decoder.from_words(&words), Reading::Null);
        }
    }

    #[test]
    fn bools_from_bits_and_registers() {
        let decoder = Decoder::new(ValueType::Bool);
        assert_eq!(decoder.data_type(), DataType::Boolean);
        assert_eq!(decoder.from_bit(true), Reading::Bool(true));
        assert_eq!(decoder.from_words(&[0]), Reading::Bool(false));
        assert_eq!(decoder.from_words(&[0x0100]), Reading::Bool(true));
        let bit8 = Decoder {
            bit: Some(8),
            ..decoder
        };
        assert_eq!(bit8.from_words(&[0x0100]), Reading::Bool(true));
        assert_eq!(bit8.from_words(&[0x00FF]), Reading::Bool(false));
    }

    #[test]
    fn too_few_words_is_a_null_not_a_panic() {
        assert_eq!(Decoder::new(ValueType::F32).from_words(&[1]), Reading::Null);
        assert_eq!(Decoder::new(ValueType::U16).from_words(&[]), Reading::Null);
    }
}
