/**
 * src/http/cookie.ts: cookieValue, reading one cookie from a Cookie header: exact names,
 * quoted and percent-encoded values, duplicates (the first wins), malformed pairs.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cookieValue } from '../../../src/http/cookie.js'

test('no header, or no such cookie: null', () => {
  assert.equal(cookieValue(undefined, 'a'), null)
  assert.equal(cookieValue('', 'a'), null)
  assert.equal(cookieValue('b=1; c=2', 'a'), null)
})

test('finds the cookie wherever it is in the header, spaces around the name and value trimmed', () => {
  assert.equal(cookieValue('a=1', 'a'), '1')
  assert.equal(cookieValue('x=0; a=1; y=2', 'a'), '1')
  assert.equal(cookieValue('x=0;a=1', 'a'), '1')
  assert.equal(cookieValue('x=0;   a =  1  ', 'a'), '1')
})

test('names match exactly: case-sensitive, no prefixes or suffixes', () => {
  assert.equal(cookieValue('A=1; ab=2; ba=3', 'a'), null)
  assert.equal(cookieValue('tok_2=x; tok=y', 'tok'), 'y')
})

test('an empty value is an empty string, not null', () => {
  assert.equal(cookieValue('a=; b=2', 'a'), '')
  assert.equal(cookieValue('a=""', 'a'), '')
})

test('a double-quoted value is unquoted (once); a lone quote is kept', () => {
  assert.equal(cookieValue('a="x y"', 'a'), 'x y')
  assert.equal(cookieValue('a=""x""', 'a'), '"x"')
  assert.equal(cookieValue('a="', 'a'), '"')
  assert.equal(cookieValue('a="open', 'a'), '"open')
})

test('percent-decoded; a malformed escape is kept as is; + is not a space', () => {
  assert.equal(cookieValue('a=h%C3%A9%3B', 'a'), 'hé;')
  assert.equal(cookieValue('a="%41%42"', 'a'), 'AB')
  assert.equal(cookieValue('a=100%', 'a'), '100%')
  assert.equal(cookieValue('a=%E2%82', 'a'), '%E2%82')
  assert.equal(cookieValue('a=x+y', 'a'), 'x+y')
})

test('"=" inside the value belongs to the value', () => {
  assert.equal(cookieValue('a=b=c==', 'a'), 'b=c==')
})

test('duplicates: the first occurrence wins', () => {
  assert.equal(cookieValue('a=1; a=2', 'a'), '1')
  assert.equal(cookieValue('a=; a=2', 'a'), '')
})

test('malformed pairs (no "=", empty parts) are skipped, not fatal', () => {
  assert.equal(cookieValue('junk; ; =v; a=1', 'a'), '1')
  assert.equal(cookieValue('a; a=2', 'a'), '2')
  assert.equal(cookieValue('=v', ''), 'v')
})
